#!/bin/bash
# tcp-profile.sh af_packet|af_xdp|bridge [SECONDS]: one iperf3 TCP stream between two namespaces
# through `hypernf run --port-backend X` (or a Linux bridge) with the veths' offloads on; prints
# the throughput and the machine's CPU ticks by kind over the run. PERF=1: `perf record -a -g`
# into /tmp/tcp-profile-X.data during the run (DOTNET_PerfMapEnabled=1 names JIT code). HNF_ARGS: more options for run. Root.
set -u; t=tp$$; a=${t}a; b=${t}b; be=$1; secs=${2:-4}; pid=
cleanup() { if [ -n "$pid" ]; then kill $pid 2>/dev/null; wait $pid 2>/dev/null; fi; ip link del ${t}br 2>/dev/null
  ip netns del ${t}na 2>/dev/null; ip netns del ${t}nb 2>/dev/null; ip link del $a 2>/dev/null; ip link del $b 2>/dev/null; }
trap cleanup EXIT
for s in a b; do ns=${t}n$s; ip netns add $ns; ip link add ${t}$s type veth peer name veth0 netns $ns
  ip -n $ns addr add 10.238.0.$([ $s = a ] && echo 1 || echo 2)/24 dev veth0; ip -n $ns link set lo up; ip -n $ns link set veth0 up; ip link set ${t}$s up; done
if [ "$be" = bridge ]; then ip link add ${t}br type bridge; ip link set $a master ${t}br; ip link set $b master ${t}br; ip link set ${t}br up
else "$(cd "$(dirname "$0")/../.." && pwd)/hypernf" run --interval 0 --port-backend $be ${HNF_ARGS:-} --attach valeo:$a --attach valeo:$b > /dev/null 2>&1 & pid=$!; fi
sleep 3; for i in $(seq 100); do ip netns exec ${t}na ping -c1 -W1 10.238.0.2 >/dev/null 2>&1 && break; sleep 0.3; done
ip netns exec ${t}nb iperf3 -s -1 -D >/dev/null; sleep 0.5
read -r _ u0 n0 s0 i0 w0 q0 sq0 st0 _ < /proc/stat
ip netns exec ${t}na iperf3 -c 10.238.0.2 -t $secs | grep -E "receiver" & ipid=$!
[ -n "${PERF:-}" ] && perf record -a -g -o /tmp/tcp-profile-$be.data -- sleep $((secs-1)) >/dev/null 2>&1
wait $ipid
read -r _ u1 n1 s1 i1 w1 q1 sq1 st1 _ < /proc/stat
echo "cpu ticks: user $((u1-u0)) sys $((s1-s0)) softirq $((sq1-sq0)) idle $((i1-i0)) steal $((st1-st0))"
