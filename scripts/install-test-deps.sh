#!/usr/bin/env bash
# Debian packages the tests use (network namespaces, veth, ping, iperf3, ethtool; gcc, make and
# binutils for the guest images of VM domains; tshark reads captures back, promtool (prometheus)
# and curl check /metrics). Idempotent; needs root.
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
command -v ethtool >/dev/null 2>&1 || need+=(ethtool)
{ command -v gcc >/dev/null 2>&1 && command -v make >/dev/null 2>&1; } || need+=(build-essential)
command -v objdump >/dev/null 2>&1 || need+=(binutils)
command -v tshark >/dev/null 2>&1 || need+=(tshark)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: not root; missing ${need[*]} (tests needing them will skip)" >&2
  exit 1
fi
echo "install-test-deps: installing ${need[*]} ..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
