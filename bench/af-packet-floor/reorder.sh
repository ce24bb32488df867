#!/bin/bash
# reorder.sh af_packet|af_xdp: iperf3 through `hypernf run --port-backend $1`, then the receiver's out-of-order counters
set -u; t=oo$$; a=${t}a; b=${t}b
cleanup() { [ -n "${pid:-}" ] && kill $pid 2>/dev/null; wait $pid 2>/dev/null; ip netns del ${t}na 2>/dev/null; ip netns del ${t}nb 2>/dev/null; ip link del $a 2>/dev/null; ip link del $b 2>/dev/null; }
trap cleanup EXIT
for s in a b; do ns=${t}n$s; ip netns add $ns; ip link add ${t}$s type veth peer name veth0 netns $ns; ip -n $ns addr add 10.237.0.$([ $s = a ] && echo 1 || echo 2)/24 dev veth0; ip -n $ns link set lo up; ip -n $ns link set veth0 up; ip link set ${t}$s up; done
"$(cd "$(dirname "$0")/../.." && pwd)/hypernf" run --interval 0 --port-backend $1 --attach valeo:$a --attach valeo:$b > /dev/null 2>&1 & pid=$!
sleep 3; for i in $(seq 30); do ip netns exec ${t}na ping -c1 -W1 10.237.0.2 >/dev/null 2>&1 && break; sleep 0.2; done
ip netns exec ${t}nb iperf3 -s -1 -D >/dev/null; sleep 0.5
ip netns exec ${t}nb nstat -n >/dev/null; ip netns exec ${t}na nstat -n > /dev/null
ip netns exec ${t}na iperf3 -c 10.237.0.2 -t 3 | grep -E "sender|receiver"
echo "receiver:"; ip netns exec ${t}nb nstat | grep -Ei "OFO|Reorder|InSegs" 
echo "sender:"; ip netns exec ${t}na nstat | grep -Ei "Reorder|Retrans|DSACK|OutSegs"
