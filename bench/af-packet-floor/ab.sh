#!/bin/bash
# Alternating A/B of ping latency through run.sh: ROUNDS rounds, each config once per round.
#   ab.sh ROUNDS PINGS "label|HYPERNF RUN ARGS" ...    a label 'bridge' runs the Linux bridge
#   e.g. ab.sh 5 300 "any|--driver-cpus any" "follow|" "bridge|"
# HNF_DIR: the checkout to run (default: this one). Prints each run, then per label the p50s
# and p99s in round order; appends the runs to AB_LOG (default /tmp/af-packet-floor-ab.log).
rounds=$1; pings=$2; shift 2
for r in $(seq $rounds); do for c in "$@"; do l=${c%%|*}; a=${c#*|}
  if [ "$l" = bridge ]; then o=$($(dirname "$0")/run.sh bridge $pings 2>&1 | grep floor); else o=$(HNF_ARGS="$a" $(dirname "$0")/run.sh ${HNF_DIR:-$(cd "$(dirname "$0")/../.." && pwd)} $pings 2>&1 | grep floor); fi
  p50=$(echo "$o" | sed -n 's/.*p50 *\([0-9]*\) us.*/\1/p'); p99=$(echo "$o" | sed -n 's/.*p99 *\([0-9]*\) us.*/\1/p'); ld=$(cut -d' ' -f1 /proc/loadavg)
  echo "$r $l p50=$p50 p99=$p99 load=$ld"; done; done | tee -a ${AB_LOG:-/tmp/af-packet-floor-ab.log} | awk '{print; split($3,a,"="); split($4,b,"="); v[$2]=v[$2]" "a[2]; w[$2]=w[$2]" "b[2]} END {for (k in v) print "SUMMARY", k, "p50:" v[k], " p99:" w[k]}'
