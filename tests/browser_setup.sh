#!/bin/sh
# Install what the browser tests need on a fresh machine (Debian): Chromium and its driver.
# Playwright's own browser download is not used (and does not work without network): the tests
# drive Debian's /usr/bin/chromium through the Python `playwright` package (requirements.txt).
# The browser test module runs this itself when /usr/bin/chromium is missing.
set -e
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo -n"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends chromium chromium-driver \
    || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends chromium chromium-driver; }
