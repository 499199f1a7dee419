#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through Playwright (never `playwright install`,
# which downloads a browser). Install the package when it is missing.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's chromium for the browser tests..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "error: /usr/bin/chromium is missing; install it with: sudo apt-get install chromium" >&2
  exit 1
fi
