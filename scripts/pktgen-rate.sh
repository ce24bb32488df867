#!/usr/bin/env bash
# netmap's own pkt-gen, tx -> rx through `hypernf exec`, next to our nm-pktgen pair on the same
# daemon: Mpps of each sender and receiver. pkt-gen is built from a netmap source tree (as
# scripts/netmap-acceptance.sh does; nothing of it is copied here).
#
#   scripts/pktgen-rate.sh NETMAP_SRC_DIR [FRAMES] [RUNS] [--cpus]
#
# Per run: `pkt-gen -f rx` on vale0:b, then `pkt-gen -f tx -n FRAMES -l 60` on vale0:a; the
# sender's rate is its own "Speed:" line (frames / its sending time), the receiver's rate is
# what it received over the sender's time (pkt-gen rx's own Speed line also counts the idle
# second before it is stopped, so it is not used); the switch's counters give delivered and
# dropped (ring full). Then the same with nm-pktgen (-b 512, pkt-gen's burst). --cpus pins the
# receivers to CPU 1 and the senders to CPU 0 (hypernf exec --cpus), as `bench process` does.
# One line per measurement on stdout, prefixed with the uptime load.
set -uo pipefail

src=${1:-}
frames=${2:-2000000}
runs=${3:-3}
pin=${4:-}
if [ -z "$src" ] || [ ! -f "$src/apps/pkt-gen/pkt-gen.c" ]; then
  echo "usage: $0 NETMAP_SRC_DIR [FRAMES] [RUNS] [--cpus]" >&2
  exit 2
fi
src=$(cd "$src" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d /tmp/hnf-pktgen-rate.XXXXXX)
daemon_pid=""
cleanup() {
  if [ -n "$daemon_pid" ]; then kill -TERM "$daemon_pid" 2>/dev/null; wait "$daemon_pid" 2>/dev/null; fi
  if [ -n "${KEEP:-}" ]; then echo "scratch directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

cflags=(-O2 -g -Wall -Wno-unused -Wno-format-truncation -I "$src/sys" -I "$src/libnetmap" -I "$src/apps/include")
for f in nmport nmreq nmctx nmctx-pthreads; do
  gcc "${cflags[@]}" -c "$src/libnetmap/$f.c" -o "$work/$f.o" 2>>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }
done
ar rcs "$work/libnetmap.a" "$work"/nmport.o "$work"/nmreq.o "$work"/nmctx.o "$work"/nmctx-pthreads.o
gcc "${cflags[@]}" -DNO_PCAP "$src/apps/pkt-gen/pkt-gen.c" -o "$work/pkt-gen" -L "$work" -lnetmap -lpthread -lm 2>"$work/build.log" || { cat "$work/build.log" >&2; exit 1; }

hnf="$root/hypernf"
"$hnf" --help >/dev/null 2>&1 || { echo "./hypernf does not build" >&2; exit 1; }
nmp="$root/artifacts/netmap-tools/nm-pktgen"
[ -x "$nmp" ] || nmp=$(find "$root/artifacts" -name nm-pktgen -type f -perm -u+x | head -1)
export HYPERNF_SOCKET="$work/hnf.sock" HYPERNF_NETMAP_QUIET=1
"$hnf" daemon --socket "$HYPERNF_SOCKET" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do [ -S "$HYPERNF_SOCKET" ] && break; sleep 0.1; done
[ -S "$HYPERNF_SOCKET" ] || { echo "daemon did not start" >&2; exit 1; }

rxcpu=(); txcpu=()
if [ "$pin" = "--cpus" ]; then rxcpu=(--cpus 1); txcpu=(--cpus 0); fi
wait_port() { for _ in $(seq 1 100); do "$hnf" stats --json "$1" 2>/dev/null | grep -q '"name"' && return 0; sleep 0.05; done; return 1; }
stop() { kill -INT "$1" 2>/dev/null; for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done; kill -KILL "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
bridge_totals() { "$hnf" stats --json "$1" 2>/dev/null | jq -r '.bridges[0] | "\(.sent) \(.delivered) \(.dropped)"'; }
mpps() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.2f", n / s / 1e6; else print "?" }'; }

for run in $(seq 1 "$runs"); do
  # netmap's pkt-gen
  br="vale$((run * 2))"
  "$hnf" exec "${rxcpu[@]}" -- "$work/pkt-gen" -i "$br:b" -f rx >"$work/rx.log" 2>&1 &
  rx=$!
  wait_port "$br:b" || { echo "pkt-gen rx did not register" >&2; exit 1; }
  "$hnf" exec "${txcpu[@]}" -- "$work/pkt-gen" -i "$br:a" -f tx -n "$frames" -l 60 >"$work/tx.log" 2>&1
  sleep 0.3
  read -r sent del drop < <(bridge_totals "$br")
  stop "$rx"
  secs=$(grep -m1 -oE 'Sent [0-9]+ packets .* in [0-9.]+ seconds' "$work/tx.log" | grep -oE '[0-9.]+ seconds' | grep -oE '^[0-9.]+')
  recv=$(grep -m1 -oE 'Received [0-9]+' "$work/rx.log" | grep -oE '[0-9]+$')
  echo "load $(cut -d' ' -f1-3 /proc/loadavg) | pkt-gen   run $run: tx $(mpps "$frames" "${secs:-0}") Mpps ($frames in ${secs:-?} s), rx received ${recv:-?} = $(mpps "${recv:-0}" "${secs:-0}") Mpps over the sender's time; switch sent $sent delivered $del dropped $drop"
  # nm-pktgen, the same calls in the same order
  br="vale$((run * 2 + 1))"
  "$hnf" exec "${rxcpu[@]}" -- "$nmp" -i "$br:b" -f rx -I 3000 >"$work/nrx.log" 2>&1 &
  rx=$!
  wait_port "$br:b" || { echo "nm-pktgen rx did not register" >&2; exit 1; }
  "$hnf" exec "${txcpu[@]}" -- "$nmp" -i "$br:a" -f tx -n "$frames" -b 512 -R 0 >"$work/ntx.log" 2>&1
  sleep 0.3
  read -r sent del drop < <(bridge_totals "$br")
  stop "$rx"
  secs=$(grep -m1 -oE '^seconds=[0-9.]+' "$work/ntx.log" | cut -d= -f2)
  recv=$(grep -m1 -oE '^received=[0-9]+' "$work/nrx.log" | cut -d= -f2)
  echo "load $(cut -d' ' -f1-3 /proc/loadavg) | nm-pktgen run $run: tx $(mpps "$frames" "${secs:-0}") Mpps ($frames in ${secs:-?} s), rx received ${recv:-?} = $(mpps "${recv:-0}" "${secs:-0}") Mpps over the sender's time; switch sent $sent delivered $del dropped $drop"
done
