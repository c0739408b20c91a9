#!/usr/bin/env bash
# Makes sure Debian's chromium and chromium-driver are installed, for the
# browser tests of the web page (services/web). Like ensure-redis.sh, it
# installs from Debian's packages when missing and does nothing otherwise.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is missing and this is not a Debian/Ubuntu machine: install Chromium and retry (the web page's browser tests need it)." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "Installing chromium and chromium-driver with apt-get..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
chromium --version >&2
