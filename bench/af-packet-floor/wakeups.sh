#!/bin/bash
# wakeups.sh OUT CHECKOUT [PINGS]: while run.sh pings through CHECKOUT's `hypernf run` (HNF_ARGS
# passed on), records 1 s of sched_switch/sched_wakeup/netif_rx/net_dev_start_xmit with ftrace into
# OUT, then prints on which CPUs ping sent (runs of consecutive pings per CPU) and how the driver
# threads were woken: by ping on its own CPU (local) or in an IPI on another (from <idle>). Root.
set -u
out=$1; shift
T=/sys/kernel/tracing
mount | grep -q tracefs || mount -t tracefs nodev $T
ev="sched/sched_switch sched/sched_wakeup net/netif_rx net/net_dev_start_xmit"
echo 0 > $T/tracing_on; echo > $T/trace; echo 8192 > $T/buffer_size_kb
for e in $ev; do echo 1 > $T/events/$e/enable; done
(timeout 300 "$(dirname "$0")/run.sh" "$@" > "$out.run" 2>&1 &)
for i in $(seq 300); do pgrep -x ping >/dev/null && break; sleep 0.2; done
sleep 4   # past run.sh's warm-up pings
echo 1 > $T/tracing_on; sleep 1; echo 0 > $T/tracing_on
cat $T/trace > "$out"
for e in $ev; do echo 0 > $T/events/$e/enable; done
while pgrep -f af-packet-floor/run.sh >/dev/null; do sleep 0.5; done
echo "ping's CPU, runs of pings: $(grep net_dev_start_xmit "$out" | grep '^ *ping-' | awk '{print $2}' | uniq -c | awk '{printf "%s%s ", $2, $1}')"
grep 'sched_wakeup: comm=hypernf' "$out" | sed -E 's/^ *([^ ]+) +\[([0-9]+)\].*pid=([0-9]+).*target_cpu=([0-9]+)/\1 on cpu \2 wakes tid \3 on cpu \4/; s/-[0-9]+ on/ on/' | sort | uniq -c
tail -1 "$out.run"
