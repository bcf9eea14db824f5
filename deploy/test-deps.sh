#!/usr/bin/env bash
# Test prerequisites beyond the Python packages, idempotent: Debian's Chromium and its
# WebDriver, which the dashboard's browser test drives through selenium (no driver download).
# Usage: deploy/test-deps.sh   (installs as root; without root it prints what is missing)
set -euo pipefail

need=()
for pkg in chromium chromium-driver; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "test-deps: missing ${need[*]} (the dashboard browser test skips); as root: apt-get install -y ${need[*]}" >&2
  exit 0
fi
echo "test-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
