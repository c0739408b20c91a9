#!/usr/bin/env bash
# Makes sure redis-server (and redis-benchmark) are installed, from Debian's
# packages. Tidings starts its own redis-server processes; it never uses a
# system service.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "redis-server is missing and this is not a Debian/Ubuntu machine: install Redis 7 (redis-server, redis-benchmark) and retry." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "Installing redis-server and redis-tools with apt-get..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
redis-server --version >&2
