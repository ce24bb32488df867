#!/usr/bin/env bash
# Ping round trips through fwd.c (see there) between two namespaces on veths, as
# `hypernf bench ports` sets them up. Needs root.  run.sh MODE [PINGS] [taskset-cpus]
#   PING_CPUS=LIST runs ping under taskset -c LIST (e.g. the driver thread's CPU)
#   PING_ARGS="-U": more ping options (-U: user-to-user times instead of the kernel's receive timestamp)
#   MODE: 0, 1, 2 (fwd.c's modes), bridge (a Linux bridge on the same veths) or a directory
#   holding a hypernf checkout (its `hypernf run --attach` on the same veths; HNF_ARGS adds
#   options, e.g. HNF_ARGS="--driver-threads port")
set -euo pipefail
mode=${1:-1}; pings=${2:-200}; cpus=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
bin=${FWD_BIN:-/tmp/af-packet-floor-fwd}
[ -x "$bin" ] && [ "$bin" -nt "$here/fwd.c" ] || gcc -O2 -Wall -pthread -o "$bin" "$here/fwd.c"
t=fl$$; a=${t}a; b=${t}b
cleanup() {
  [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  ip netns del ${t}na 2>/dev/null || true; ip netns del ${t}nb 2>/dev/null || true
  ip link del $a 2>/dev/null || true; ip link del $b 2>/dev/null || true; ip link del ${t}br 2>/dev/null || true
}
trap cleanup EXIT
for s in a b; do
  ns=${t}n$s; out=${t}$s
  ip netns add $ns
  ip link add $out type veth peer name veth0 netns $ns
  ip -n $ns addr add 10.239.0.$([ $s = a ] && echo 1 || echo 2)/24 dev veth0
  ip -n $ns link set lo up; ip -n $ns link set veth0 up; ip link set $out up
done
if [ "$mode" = bridge ]; then
  ip link add ${t}br type bridge; ip link set $a master ${t}br; ip link set $b master ${t}br; ip link set ${t}br up
elif [ -d "$mode" ]; then
  "$mode/hypernf" run --interval 0 ${HNF_ARGS:-} --attach valep3:$a --attach valep3:$b >${HNF_OUT:-/dev/null} & pid=$!
  for i in $(seq 100); do [ -n "$(ls /sys/class/net/$a/ 2>/dev/null)" ] && ip link show $a | grep -q PROMISC && break; sleep 0.1; done
  sleep 1
else
  ${cpus:+taskset -c $cpus} "$bin" $a $b "$mode" & pid=$!
fi
for i in $(seq 30); do ip netns exec ${t}na ping -c1 -W1 10.239.0.2 >/dev/null 2>&1 && break; sleep 0.1; done
${PING_CPUS:+taskset -c $PING_CPUS} ip netns exec ${t}na ping -c 50 -i 0.01 -q 10.239.0.2 >/dev/null
${PING_CPUS:+taskset -c $PING_CPUS} ip netns exec ${t}na ping ${PING_ARGS:-} -c "$pings" -i 0.01 -W 1 10.239.0.2 | sed -n 's/.*time=\([0-9.]*\) ms/\1/p' | sort -n |
  awk -v m="$mode" -v a="${HNF_ARGS:-}" -v l="$(cut -d' ' -f1-3 /proc/loadavg)" '{v[NR]=$1*1000} END {p50=v[int(NR*0.5+0.999)]; p99=v[int(NR*0.99+0.999)];
    printf "floor mode %-6s %s pings %d  p50 %4.0f us  p99 %5.0f us  min %3.0f us  (load %s)\n", m, a, NR, p50, p99, v[1], l}'
