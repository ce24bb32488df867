#!/bin/bash
# cpu-per-gb.sh [CHECKOUT] [SECONDS] [BACKEND] (HNF_ARGS: more run options): one iperf3 TCP stream through `hypernf run` (two
# veth namespaces, offloads on); prints Gbit/s and the run process's CPU (user + system: its
# driver threads, with the kernel work their syscalls do) per GB moved. Less at the mercy of the
# other tenants' steal time than Gbit/s alone: the CPU a byte costs us, not how many bytes came.
set -u; dir=${1:-$(cd "$(dirname "$0")/../.." && pwd)}; secs=${2:-5}; backend=${3:-af_packet}
t=cg$$; a=${t}a; b=${t}b
cleanup() { [ -n "${pid:-}" ] && kill $pid 2>/dev/null; wait $pid 2>/dev/null; ip netns del ${t}na 2>/dev/null; ip netns del ${t}nb 2>/dev/null; ip link del $a 2>/dev/null; ip link del $b 2>/dev/null; }
trap cleanup EXIT
for s in a b; do ns=${t}n$s; ip netns add $ns; ip link add ${t}$s type veth peer name veth0 netns $ns; ip -n $ns addr add 10.239.0.$([ $s = a ] && echo 1 || echo 2)/24 dev veth0; ip -n $ns link set lo up; ip -n $ns link set veth0 up; ip link set ${t}$s up; done
"$dir/hypernf" run --interval 0 --port-backend $backend ${HNF_ARGS:-} --attach valeg:$a --attach valeg:$b > /dev/null 2>&1 & pid=$!
sleep 3; for i in $(seq 30); do ip netns exec ${t}na ping -c1 -W1 10.239.0.2 >/dev/null 2>&1 && break; sleep 0.2; done
ip netns exec ${t}nb iperf3 -s -1 -D >/dev/null; sleep 0.5
hz=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' /proc/$pid/stat; }
steal() { awk '/^cpu /{print $9}' /proc/stat; }
c0=$(cpu); s0=$(steal)
out=$(ip netns exec ${t}na iperf3 -c 10.239.0.2 -t $secs -J)
c1=$(cpu); s1=$(steal)
bytes=$(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["end"]["sum_received"]["bytes"])')
python3 - "$bytes" "$c0" "$c1" "$hz" "$secs" "$s0" "$s1" <<'PY'
import sys
b, c0, c1, hz, secs, s0, s1 = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
cpu = (c1 - c0) / hz
print(f"{b * 8 / secs / 1e9:.2f} Gbit/s  run CPU {cpu:.2f} s = {100 * cpu / secs:.0f}% of one core  {cpu / (b / 1e9) * 1000:.0f} ms per GB  steal {100 * (s1 - s0) / hz / secs / 2:.0f}%")
PY
