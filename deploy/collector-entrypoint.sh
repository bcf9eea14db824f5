#!/bin/sh
# Collector container entrypoint: find kernel headers for bcc, then exec the command.
#
# bcc compiles bpf/*.c against /lib/modules/$(uname -r)/build. In a container that path is
# the image's, not the host's, so it is looked up in this order (deploy/host-deps.sh does the
# same on a bare host):
#   1. /lib/modules/<release>/build already resolves: the host's /lib/modules and /usr/src
#      are bind-mounted at their own paths (the Kubernetes DaemonSet does this);
#   2. the host's own link, read through the host root (HMTEL_HOST_ROOT, default /host):
#      <root>/lib/modules/<release>/{build,source} -> <root>/<target>;
#   3. <root>/usr/src/linux-headers-<release>, then the newest other header tree there
#      (Debian's split -amd64/-common layout; a version mismatch makes bcc warn, not fail);
#   4. the kernel's own kheaders (/sys/kernel/kheaders.tar.xz, CONFIG_IKHEADERS): bcc uses
#      them by itself.
# With none of these the collector still starts and reports its eBPF sources as missing.
# HMTEL_KERNEL_RELEASE and HMTEL_MODULES_DIR exist so tests can run this against a fake tree.
set -eu

root="${HMTEL_HOST_ROOT:-/host}"
release="${HMTEL_KERNEL_RELEASE:-$(uname -r)}"
modules="${HMTEL_MODULES_DIR:-/lib/modules}/$release"

say() { echo "hmtel-collector-entrypoint: $*" >&2; }

link_headers() {  # link_headers BUILD_DIR [SOURCE_DIR]
  if mkdir -p "$modules" 2>/dev/null && ln -sfn "$1" "$modules/build" 2>/dev/null; then
    [ -n "${2:-}" ] && ln -sfn "$2" "$modules/source" 2>/dev/null
    say "kernel headers for $release: $1"
  else
    say "cannot write $modules (read-only?); bind-mount the host's /lib/modules and /usr/src instead"
  fi
}

header_trees() {  # header_trees: every header directory under <root>/usr/src, oldest first
  for dir in "$root"/usr/src/linux-headers-*; do
    [ -d "$dir" ] && echo "$dir"
  done | sort -V
}

host_target() {  # host_target LINK: the host path LINK points at, seen through $root
  target=$(readlink "$1") || return 1
  case "$target" in
    /*) echo "$root$target" ;;
    *) echo "$(dirname "$1")/$target" ;;
  esac
}

if [ -e "$modules/build/Makefile" ]; then
  say "kernel headers for $release: $(readlink -f "$modules/build")"
elif [ -L "$root/lib/modules/$release/build" ] && build=$(host_target "$root/lib/modules/$release/build") \
     && [ -d "$build" ]; then
  source=""
  if [ -L "$root/lib/modules/$release/source" ]; then
    source=$(host_target "$root/lib/modules/$release/source") || source=""
  fi
  link_headers "$build" "$source"
elif [ -d "$root/usr/src/linux-headers-$release" ]; then
  link_headers "$root/usr/src/linux-headers-$release"
elif newest=$(header_trees | grep -v -- '-common$' | tail -n 1) && [ -n "$newest" ]; then
  common=$(header_trees | grep -- '-common$' | tail -n 1 || true)
  link_headers "$newest" "$common"
  say "note: $newest is not built for $release; bcc may warn about the version"
elif [ -e /sys/kernel/kheaders.tar.xz ]; then
  say "no header package; bcc will use the kernel's kheaders"
else
  say "no kernel headers for $release under $root or /lib/modules; eBPF sources will be reported missing"
fi

# tracefs is where bcc finds tracepoint ids; a privileged container can mount it itself.
if [ ! -e /sys/kernel/tracing/events ] && [ -d /sys/kernel/tracing ]; then
  mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || say "tracefs is not mounted and cannot be; tracepoint programs will be skipped"
fi

exec "$@"
