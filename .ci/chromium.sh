#!/usr/bin/env bash
# The browser tests drive Debian's Chromium: install it when it is missing and we can.
# Never fatal: without it those tests skip and say why. Playwright's own browser download
# is not used (it cannot reach its CDN here).
set -u
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Chromium for the browser tests (apt-get install chromium)" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "warning: could not install Chromium; the browser tests will skip" >&2
else
  echo "warning: /usr/bin/chromium is missing and cannot be installed here; the browser tests will skip" >&2
fi
exit 0
