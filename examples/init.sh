#!/usr/bin/env bash
# The initialisation script of the HyperNF README, translated to hypernf commands.
#
#   examples/init.sh
#
# Environment: HYPERNF   the hypernf command (default: ../hypernf next to this folder; may be
#                        "dotnet path/to/HyperNF.Cli.dll")
#              HYPERNF_SOCKET  the daemon's socket (default /run/hypernf/hypernf.sock)
#              NIC       an interface to attach to bridge valex (the original's eth1); unset: none
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
hypernf() { ${HYPERNF:-"$here/../hypernf"} "$@"; }
nic=${NIC:-}

# rmmod xen_netmapback; rmmod i40e; rmmod netmap
# insmod netmap.ko; insmod i40e.ko; insmod xen-netmapback.ko; sleep 0.5
#   -> the switch, its ports and the domains live in the hypernf daemon: start one unless one runs.
if ! hypernf get bridge_batch >/dev/null 2>&1; then
  hypernf daemon &
  for _ in $(seq 300); do
    hypernf get bridge_batch >/dev/null 2>&1 && break
    sleep 0.1
  done
  hypernf get bridge_batch >/dev/null
fi

# ifdown eth1; ifup eth1
# ethtool -K eth1 tx off rx off tso off gso off gro off lro off sg off ntuple off rxvlan off txvlan off rxhash off highdma off
# ifconfig eth1 promisc; ethtool -L eth1 combined 1; ifconfig eth1 up
#   -> done by the interface attacher when the NIC is attached (vale-ctl -a, below): it brings
#      the interface up, makes it promiscuous and turns GRO/LRO off while attached. The other
#      offloads stay on: their metadata crosses the bridge in a virtio-net header (docs/ports.md).

# echo 100 > /sys/module/netmap/parameters/bridge_batch
# HyperNF/xen-netmapback/tools/xennet_ctrl -o 1 -v 100
#   -> one switch, one setting: ctl op 1 (the same as "hypernf set bridge_batch 100").
hypernf ctl -o 1 -v 100

# HyperNF/xen-netmapback/tools/xennet_ctrl -o 2 -v 0
#   -> not run. Op 2 (NIC busy-wait) is not implemented by the reference Xen either (a no-op
#      there); hypernf refuses ops it cannot honour: "hypernf ctl -o 2 -v 0" exits 1 saying why.

# xl sched-credit2 -s -p Pool-0 -r 0   (no scheduler rate limit)
hypernf sched-credit2 -s -p Pool-0 -r 0

# The bridges of the example VM need no command: as in VALE, a bridge is created by its first
# port (the NIC below, or the domain's vifs) and removed with its last. (netmap's vale-ctl -n
# creates a persistent port, which HyperNF does not have: hypernf vale-ctl -n says so.)
# The NIC on valex when one is given:
if [ -n "$nic" ]; then
  hypernf vale-ctl -a "valex:$nic"
fi

# xl create linux.cfg
hypernf create "$here/linux.cfg"
hypernf list
