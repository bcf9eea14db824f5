#!/usr/bin/env bash
# Host prerequisites for the eBPF collector (Debian/Ubuntu), idempotent:
#   1. bcc from the distribution (python3-bpfcc; the PyPI "bcc" is an unrelated package),
#      and kernel headers;
#   2. /lib/modules/$(uname -r)/{build,source} pointing at the installed headers when the
#      running kernel has none of its own (bcc compiles against them);
#   3. tracefs mounted at /sys/kernel/tracing;
#   4. bcc importable from the project venv (a symlink to the distribution's module only,
#      not the whole dist-packages, so no other Debian module leaks into the venv).
# Usage: deploy/host-deps.sh [VENV]   (needs root; without root it says what it would need)
set -euo pipefail
venv="${1:-.venv}"

if [ "$(id -u)" != 0 ]; then
  echo "host-deps: not root; skipping bcc, headers and tracefs (the collector degrades to procfs sources)" >&2
  exit 0
fi

need=()
for pkg in python3-bpfcc bpfcc-tools linux-headers-amd64 iproute2 util-linux iputils-ping procps; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "host-deps: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

mods="/lib/modules/$(uname -r)"
if [ ! -e "$mods/build" ]; then
  hdr=$(ls -d /usr/src/linux-headers-*-amd64 2>/dev/null | sort -V | tail -1)
  common=$(ls -d /usr/src/linux-headers-*-common 2>/dev/null | sort -V | tail -1)
  if [ -n "$hdr" ]; then
    mkdir -p "$mods"
    ln -sfn "$hdr" "$mods/build"
    [ -n "$common" ] && ln -sfn "$common" "$mods/source"
    echo "host-deps: linked $mods/build -> $hdr" >&2
  fi
fi

if ! mountpoint -q /sys/kernel/tracing; then
  mount -t tracefs tracefs /sys/kernel/tracing && echo "host-deps: mounted tracefs" >&2
fi
if [ -d /sys/kernel/debug ] && ! mountpoint -q /sys/kernel/debug; then
  mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null || true
fi

if [ -x "$venv/bin/python" ]; then
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  if [ -d /usr/lib/python3/dist-packages/bcc ] && [ ! -e "$site/bcc" ]; then
    ln -sfn /usr/lib/python3/dist-packages/bcc "$site/bcc"
    echo "host-deps: linked bcc into $venv" >&2
  fi
fi
