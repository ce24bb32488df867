#!/usr/bin/env bash
# Acceptance with netmap's own programs (issue 15): builds pkt-gen, bridge, vale-ctl, lb and
# libnetmap from netmap's sources (a checkout of github.com/luigirizzo/netmap, given as the
# argument; nothing is fetched, nothing of it is copied into this repository) with the system's
# gcc against netmap's own headers, starts a private HyperNF daemon, runs each program unmodified
# through `hypernf exec`, checks what they print against the switch's counters, and prints one
# PASS/FAIL line per check. Exit status: the number of failed checks (0 = all passed).
#
#   scripts/netmap-acceptance.sh NETMAP_SRC_DIR [--keep]
#
# NETMAP_SRC_DIR must hold sys/net/netmap*.h, libnetmap/*.{c,h}, apps/include/ctrs.h and
# apps/{pkt-gen,bridge,vale-ctl,lb}. --keep leaves the scratch directory (binaries, logs).
set -uo pipefail

src=${1:-}
keep=${2:-}
if [ -z "$src" ] || [ ! -f "$src/sys/net/netmap.h" ] || [ ! -f "$src/libnetmap/nmport.c" ]; then
  echo "usage: $0 NETMAP_SRC_DIR [--keep]   (a netmap source tree: sys/net/netmap.h, libnetmap/, apps/)" >&2
  exit 2
fi
src=$(cd "$src" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d /tmp/hnf-netmap-acceptance.XXXXXX)
bin="$work/bin"
mkdir -p "$bin"
fails=0
daemon_pid=""
bg_pids=()

cleanup() {
  for p in "${bg_pids[@]}"; do kill -INT "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${bg_pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid" 2>/dev/null
    wait "$daemon_pid" 2>/dev/null
  fi
  if [ "$keep" = "--keep" ]; then echo "scratch directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

pass() { echo "PASS $1: $2"; }
fail() { echo "FAIL $1: $2"; fails=$((fails + 1)); }

# ---------------------------------------------------------------- build (netmap's own sources)
cflags=(-O2 -g -Wall -Wno-unused -Wno-format-truncation -I "$src/sys" -I "$src/libnetmap" -I "$src/apps/include")
pcap=(-DNO_PCAP)
pcaplib=()
if [ -f /usr/include/pcap/pcap.h ]; then pcap=(); pcaplib=(-lpcap); fi
build() { # NAME CMD...
  local name=$1; shift
  if ! "$@" >"$work/build-$name.log" 2>&1; then
    fail "build $name" "gcc failed: $(grep -m1 -E 'error' "$work/build-$name.log")"
    return 1
  fi
}
built=1
for f in nmport nmreq nmctx nmctx-pthreads; do
  build "libnetmap-$f" gcc "${cflags[@]}" -c "$src/libnetmap/$f.c" -o "$work/$f.o" || built=0
done
[ $built = 1 ] && ar rcs "$bin/libnetmap.a" "$work"/nmport.o "$work"/nmreq.o "$work"/nmctx.o "$work"/nmctx-pthreads.o
[ $built = 1 ] && build pkt-gen gcc "${cflags[@]}" "${pcap[@]}" "$src/apps/pkt-gen/pkt-gen.c" -o "$bin/pkt-gen" \
  -L "$bin" -lnetmap "${pcaplib[@]}" -lpthread -lm
# A netmap_user.h whose nm_open() (compiled by the programs that define NETMAP_WITH_LIBS: bridge,
# lb) names NM_STACK_NAME, next to a netmap.h that does not define it (a mix the stored copies give,
# /work/netmap-src/SOURCES.txt): define the prefix on their command line, netmap's files untouched.
withlibs=()
if grep -q NM_STACK_NAME "$src/sys/net/netmap_user.h" && ! grep -q 'define[[:space:]]*NM_STACK_NAME' "$src/sys/net/netmap.h"; then
  withlibs=(-DNM_STACK_NAME='"stack"')
fi
build bridge gcc "${cflags[@]}" "${withlibs[@]}" "$src/apps/bridge/bridge.c" -o "$bin/bridge"
[ $built = 1 ] && build vale-ctl gcc "${cflags[@]}" "$src/apps/vale-ctl/vale-ctl.c" -o "$bin/vale-ctl" -L "$bin" -lnetmap -lpthread
# lb.c of the stored tree calls ctrs.h's norm() with two arguments, ctrs.h defines three: a
# compatibility header of ours (force-included, netmap's files untouched) maps the old call.
cat >"$work/lb-compat.h" <<'EOF'
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/select.h>
#include "ctrs.h"
static inline const char *hnf_norm_2(char *b, double v) { return (norm)(b, v, 1); }
#define HNF_NORM_PICK(_1, _2, _3, NAME, ...) NAME
#define norm(...) HNF_NORM_PICK(__VA_ARGS__, (norm), hnf_norm_2)(__VA_ARGS__)
EOF
build lb gcc "${cflags[@]}" "${withlibs[@]}" -include "$work/lb-compat.h" "$src/apps/lb/lb.c" "$src/apps/lb/pkt_hash.c" -o "$bin/lb" -lpthread
for p in pkt-gen bridge vale-ctl lb; do [ -x "$bin/$p" ] && pass "build $p" "built from $src with gcc against netmap's headers"; done

# ---------------------------------------------------------------- the daemon
hnf="$root/hypernf"
"$hnf" --help >/dev/null 2>"$work/hypernf-build.log" || { fail daemon "./hypernf does not build: $(tail -3 "$work/hypernf-build.log")"; exit $fails; }
export HYPERNF_SOCKET="$work/hnf.sock"
export HYPERNF_NETMAP_QUIET=1
"$hnf" daemon --socket "$HYPERNF_SOCKET" >"$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do [ -S "$HYPERNF_SOCKET" ] && break; sleep 0.1; done
if [ ! -S "$HYPERNF_SOCKET" ]; then fail daemon "did not start: $(tail -3 "$work/daemon.log")"; exit $fails; fi

run() { "$hnf" exec -- "$@"; }                    # a netmap program as a process domain
start() { # LOG PROGRAM ARGS...: in the background, pid appended to bg_pids
  local log=$1; shift
  "$hnf" exec -- "$@" >"$log" 2>&1 &
  bg_pids+=($!)
  last_pid=$!
}
stop() { # PID: SIGINT (the programs print their totals), then wait
  kill -INT "$1" 2>/dev/null
  for _ in $(seq 1 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null
  wait "$1" 2>/dev/null
}
wait_port() { # BRIDGE:PORT: until the daemon lists it
  for _ in $(seq 1 100); do
    "$hnf" stats --json "$1" 2>/dev/null | grep -q '"name"' && return 0
    sleep 0.1
  done
  return 1
}
bridge_json() { "$hnf" stats --json "$1" 2>/dev/null; }
jget() { jq -r "$1" 2>/dev/null; }
num() { grep -m1 -oE "$1 [0-9]+" | grep -oE '[0-9]+$'; }

# ---------------------------------------------------------------- pkt-gen -f tx / -f rx
n=200000
start "$work/rx.log" "$bin/pkt-gen" -i vale0:b -f rx
rx_pid=$last_pid
if wait_port vale0:b; then
  run "$bin/pkt-gen" -i vale0:a -f tx -n $n -l 60 >"$work/tx.log" 2>&1
  tx_rc=$?
  sleep 0.5
  stats=$(bridge_json vale0)
  stop "$rx_pid"
  sent=$(num "Sent" <"$work/tx.log"); recv=$(num "Received" <"$work/rx.log")
  b_sent=$(echo "$stats" | jget '.bridges[0].sent'); b_del=$(echo "$stats" | jget '.bridges[0].delivered')
  b_drop=$(echo "$stats" | jget '.bridges[0].dropped'); b_un=$(echo "$stats" | jget '.bridges[0].unaccounted')
  if [ "$tx_rc" = 0 ] && [ "${sent:-x}" = "$n" ] && [ "${b_sent:-x}" = "$n" ] && [ "${recv:-x}" = "${b_del:-y}" ] &&
     [ "$b_un" = 0 ] && [ $((b_del + b_drop)) = "$n" ]; then
    # The rates: the sender's own (frames over its sending time) and the receiver's frames over
    # that same time. pkt-gen rx's own Speed line divides by the time until it was stopped,
    # idle included, so it is not shown.
    secs=$(grep -m1 -oE 'in [0-9.]+ seconds' "$work/tx.log" | grep -oE '[0-9.]+')
    rates=$(awk -v n="$sent" -v r="$recv" -v s="${secs:-0}" 'BEGIN { if (s > 0) printf "tx %.2f Mpps over %s s, rx %.2f Mpps over the same time", n / s / 1e6, s, r / s / 1e6; else print "no sender time" }')
    pass "pkt-gen tx/rx" "tx sent $sent, rx received $recv; switch: sent $b_sent delivered $b_del dropped $b_drop unaccounted $b_un ($rates)"
  else
    fail "pkt-gen tx/rx" "rc $tx_rc, tx sent '${sent:-}' rx received '${recv:-}'; switch sent '$b_sent' delivered '$b_del' dropped '$b_drop' unaccounted '$b_un' (logs: $work/tx.log $work/rx.log)"
  fi
else
  stop "$rx_pid"; fail "pkt-gen tx/rx" "the receiver never registered vale0:b: $(tail -3 "$work/rx.log")"
fi

# ---------------------------------------------------------------- pkt-gen -p 2 (a thread per ring)
# two ring pairs per port (@conf:rings=2); each thread registers its ring with NR_REG_ONE_NIC
start "$work/mrx.log" "$bin/pkt-gen" -i 'vale6:b@conf:rings=2' -f rx -p 2
mrx_pid=$last_pid
if wait_port vale6:b; then
  n4=100000
  run "$bin/pkt-gen" -i 'vale6:a@conf:rings=2' -f tx -n $n4 -p 2 >"$work/mtx.log" 2>&1
  sleep 0.5
  stats=$(bridge_json vale6)
  stop "$mrx_pid"
  sent=$(num "Sent" <"$work/mtx.log"); recv=$(num "Received" <"$work/mrx.log")
  b_sent=$(echo "$stats" | jget '.bridges[0].sent'); b_del=$(echo "$stats" | jget '.bridges[0].delivered')
  b_un=$(echo "$stats" | jget '.bridges[0].unaccounted')
  if [ "${sent:-x}" = "$n4" ] && [ "${b_sent:-x}" = "$n4" ] && [ "${recv:-x}" = "${b_del:-y}" ] && [ "$b_un" = 0 ] &&
     grep -q '2 queues, 2 threads' "$work/mtx.log"; then
    pass "pkt-gen -p 2" "two threads on two rings each side: tx sent $sent, rx received $recv; switch: sent $b_sent delivered $b_del unaccounted $b_un"
  else
    fail "pkt-gen -p 2" "tx sent '${sent:-}' rx received '${recv:-}'; switch sent '$b_sent' delivered '$b_del' unaccounted '$b_un': $(grep -m2 -iE 'error|busy|invalid' "$work/mtx.log" "$work/mrx.log" | tr '\n' ' ')"
  fi
else
  stop "$mrx_pid"; fail "pkt-gen -p 2" "the receiver never registered vale6:b: $(tail -3 "$work/mrx.log")"
fi

# ---------------------------------------------------------------- pkt-gen -f ping / -f pong
start "$work/pong.log" "$bin/pkt-gen" -i vale1:pong -f pong
pong_pid=$last_pid
if wait_port vale1:pong; then
  # pkt-gen folds its RTTs into the final line once per second of run: 3000 pings at 1000/s
  timeout 60 "$hnf" exec -- "$bin/pkt-gen" -i vale1:ping -f ping -n 3000 -R 1000 >"$work/ping.log" 2>&1
  ping_rc=$?
  stop "$pong_pid"
  rtt=$(grep -m1 -oE 'RTT over [0-9]+ packets: min [0-9]+ av [0-9]+ ns' "$work/ping.log")
  counts=$(grep -oE 'count [0-9]+ RTT: min [0-9]+ av [0-9]+ ns' "$work/ping.log" | head -3 | tr '\n' ';')
  if [ "$ping_rc" = 0 ] && [ -n "$rtt" ] && [ -n "$counts" ] && ! grep -q 'RTT over 0 ' <<<"$rtt"; then
    pass "pkt-gen ping/pong" "$rtt (per second: $counts)"
  else
    fail "pkt-gen ping/pong" "rc $ping_rc, no RTT line: $(tail -3 "$work/ping.log" | tr '\n' ' ')"
  fi
else
  stop "$pong_pid"; fail "pkt-gen ping/pong" "pong never registered: $(tail -3 "$work/pong.log")"
fi

# ---------------------------------------------------------------- bridge between two switches
# pkt-gen tx on vale2:src -> bridge (vale2:x <-> vale3:y, zero-copy swaps) -> pkt-gen rx on vale3:dst
start "$work/bridge.log" "$bin/bridge" -w 0 -i vale2:x -i vale3:y
br_pid=$last_pid
start "$work/brx.log" "$bin/pkt-gen" -i vale3:dst -f rx
brx_pid=$last_pid
if wait_port vale2:x && wait_port vale3:y && wait_port vale3:dst; then
  n2=20000
  run "$bin/pkt-gen" -i vale2:src -f tx -n $n2 -R 50000 >"$work/btx.log" 2>&1
  sleep 1
  s2=$(bridge_json vale2); s3=$(bridge_json vale3)
  stop "$brx_pid"; stop "$br_pid"
  sent=$(num "Sent" <"$work/btx.log"); recv=$(num "Received" <"$work/brx.log")
  un2=$(echo "$s2" | jget '.bridges[0].unaccounted'); un3=$(echo "$s3" | jget '.bridges[0].unaccounted')
  d2=$(echo "$s2" | jget '.bridges[0].dropped'); d3=$(echo "$s3" | jget '.bridges[0].dropped')
  # Every frame is accounted for: received at the end, or dropped (counted) by one of the two
  # switches when a receiver's ring was full (VALE's semantics: a switch never waits for a
  # receiver; a receiver not scheduled for a few ms under the machine's load loses frames).
  if [ "${sent:-x}" = "$n2" ] && [ -n "${recv:-}" ] && [ "$((recv + d2 + d3))" = "$n2" ] && [ "$recv" -gt 0 ] &&
     [ "$un2" = 0 ] && [ "$un3" = 0 ] && grep -q 'zerocopy supported' "$work/bridge.log"; then
    pass "bridge" "pkt-gen sent $sent on vale2, bridge forwarded them zero-copy to vale3, pkt-gen received $recv; dropped (ring full, counted) $d2 on vale2, $d3 on vale3; unaccounted 0/0"
  else
    fail "bridge" "sent '${sent:-}' received '${recv:-}' drops '$d2/$d3' unaccounted '$un2/$un3'; bridge: $(grep -m1 -E 'zerocopy|cannot' "$work/bridge.log")"
  fi
else
  stop "$brx_pid"; stop "$br_pid"; fail "bridge" "ports never registered: $(tail -2 "$work/bridge.log" | tr '\n' ' ')"
fi

# ---------------------------------------------------------------- vale-ctl
# (vale-ctl without arguments lists every port and exits 1 even when it succeeds: netmap's
# list_all() returns 1; its output is what we judge)
vc() { run "$bin/vale-ctl" "$@" >"$work/vc.log" 2>&1; }
vc_ok=1; vc_out=""
if vc -n hnfacc0; then vc_out+="-n ok; "; else vc_ok=0; vc_out+="-n failed ($(cat "$work/vc.log")); "; fi
if vc -a vale4:hnfacc0; then vc_out+="-a ok; "; else vc_ok=0; vc_out+="-a failed ($(cat "$work/vc.log")); "; fi
vc; if grep -q 'vale4:hnfacc0' "$work/vc.log"; then vc_out+="list shows '$(grep -m1 'vale4:hnfacc0' "$work/vc.log")'; "; else vc_ok=0; vc_out+="list failed ($(cat "$work/vc.log")); "; fi
if vc -l vale4:hnfacc0 && grep -q 'bridge_idx' "$work/vc.log"; then vc_out+="-l: $(tr '\n' ' ' <"$work/vc.log"); "; else vc_ok=0; vc_out+="-l failed ($(cat "$work/vc.log")); "; fi
if vc -g vale4:hnfacc0 && grep -q 'tx_rings' "$work/vc.log"; then vc_out+="-g ok; "; else vc_ok=0; vc_out+="-g failed ($(cat "$work/vc.log")); "; fi
if vc -d vale4:hnfacc0; then vc_out+="-d ok; "; else vc_ok=0; vc_out+="-d failed ($(cat "$work/vc.log")); "; fi
vc; if ! grep -q 'vale4:hnfacc0' "$work/vc.log"; then vc_out+="gone from list; "; else vc_ok=0; vc_out+="still listed; "; fi
if vc -r hnfacc0; then vc_out+="-r ok; "; else vc_ok=0; vc_out+="-r failed ($(cat "$work/vc.log")); "; fi
if vc -r hnfacc0; then vc_ok=0; vc_out+="second -r succeeded; "; else vc_out+="second -r: $(tr '\n' ' ' <"$work/vc.log"); "; fi
if vc -a vale4:hnfnoif0; then vc_ok=0; vc_out+="-a of a missing interface succeeded"
elif grep -q 'No such device' "$work/vc.log"; then vc_out+="-a of a missing interface: $(tr '\n' ' ' <"$work/vc.log")"
else vc_ok=0; vc_out+="-a of a missing interface: not ENXIO ($(cat "$work/vc.log"))"; fi
if vc -h vale4:lo; then vc_ok=0; vc_out+="; -h (host stack) succeeded"
elif grep -q 'not supported' "$work/vc.log"; then vc_out+="; -h (host rings, not served): $(tr '\n' ' ' <"$work/vc.log")"
else vc_ok=0; vc_out+="; -h: not EOPNOTSUPP ($(cat "$work/vc.log"))"; fi
if [ $vc_ok = 1 ]; then pass vale-ctl "$vc_out"; else fail vale-ctl "$vc_out"; fi

# ---------------------------------------------------------------- lb (netmap pipes)
# pkt-gen tx (varying source ports) on vale5:src -> lb -i vale5:lbin -p 2 -> pipes
# vale5:lbin{0,1 -> two pkt-gen rx on vale5:lbin}0 and }1
start "$work/lb.log" "$bin/lb" -i vale5:lbin -p 2
lb_pid=$last_pid
ok=0
for _ in $(seq 1 100); do grep -q 'successfully opened pipe #2' "$work/lb.log" && { ok=1; break; }; kill -0 "$lb_pid" 2>/dev/null || break; sleep 0.1; done
if [ $ok = 1 ]; then
  start "$work/lrx0.log" "$bin/pkt-gen" -i 'vale5:lbin}0' -f rx
  l0=$last_pid
  start "$work/lrx1.log" "$bin/pkt-gen" -i 'vale5:lbin}1' -f rx
  l1=$last_pid
  sleep 3   # lb waits 2 s for the link before it starts polling
  n3=20000
  run "$bin/pkt-gen" -i vale5:src -f tx -n $n3 -R 50000 -s 10.0.0.1:1000-10.0.0.1:1999 >"$work/ltx.log" 2>&1
  sleep 1
  s5=$(bridge_json vale5)
  l_del=$(echo "$s5" | jget '.bridges[0].delivered'); l_drop=$(echo "$s5" | jget '.bridges[0].dropped'); l_un=$(echo "$s5" | jget '.bridges[0].unaccounted')
  stop "$l0"; stop "$l1"; stop "$lb_pid"
  sent=$(num "Sent" <"$work/ltx.log"); r0=$(num "Received" <"$work/lrx0.log"); r1=$(num "Received" <"$work/lrx1.log")
  fwd=$(grep -m1 -oE '[0-9]+ packets forwarded' "$work/lb.log" | grep -oE '^[0-9]+')
  lbdrop=$(grep -m1 -oE '[0-9]+ packets dropped' "$work/lb.log" | grep -oE '^[0-9]+')
  # As for bridge: what lb got it forwarded (its pipes do not drop: the two receivers get exactly
  # that), and what it did not get the switch dropped and counted (lb's ring full).
  if [ "${sent:-x}" = "$n3" ] && [ -n "${r0:-}" ] && [ -n "${r1:-}" ] && [ -n "${fwd:-}" ] && [ "$((r0 + r1))" = "$fwd" ] &&
     [ "${lbdrop:-x}" = 0 ] && [ "${l_del:-x}" = "$fwd" ] && [ "$((l_del + l_drop))" = "$n3" ] && [ "${l_un:-x}" = 0 ] &&
     [ "$r0" -gt 0 ] && [ "$r1" -gt 0 ]; then
    pass lb "pkt-gen sent $sent; lb got $fwd and forwarded them over 2 pipes: $r0 + $r1 received; the switch dropped (lb's ring full, counted) $l_drop; unaccounted 0"
  else
    fail lb "sent '${sent:-}' pipe 0 '${r0:-}' pipe 1 '${r1:-}' lb forwarded '${fwd:-}' dropped '${lbdrop:-}'; switch delivered '${l_del:-}' dropped '${l_drop:-}' unaccounted '${l_un:-}': $(grep -m2 -E 'cannot|error|failed' "$work/lb.log" "$work/lrx0.log" | tr '\n' ' ')"
  fi
else
  stop "$lb_pid"; fail lb "lb did not open its pipes: $(grep -E 'cannot|failed|error' "$work/lb.log" | head -3 | tr '\n' ' ')"
fi

echo "netmap acceptance: $fails failed"
exit $fails
