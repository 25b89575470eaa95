#!/bin/sh
# Install what the browser tests need (Debian): Chromium and its driver, only when missing.
# Called by `make browser` (a prerequisite of `make test`), never by the test suite itself.
# Playwright's own browser download is not used (and does not work without network): the tests
# drive Debian's /usr/bin/chromium through the Python `playwright` package (requirements.txt).
# Tolerant: when Chromium cannot be installed (no apt-get, not root and no sudo, no network) it
# says so and exits 0; the browser tests then skip with that reason.
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
say() { echo "browser_setup: $*" >&2; }
if ! command -v apt-get >/dev/null 2>&1; then
    say "no /usr/bin/chromium and no apt-get: install Chromium by hand; the browser tests will skip"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        say "no /usr/bin/chromium, not root and no sudo: run 'apt-get install chromium chromium-driver' as root; the browser tests will skip"
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
say "installing Debian chromium and chromium-driver (apt-get)"
if $SUDO apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null \
    || { $SUDO apt-get update >/dev/null \
         && $SUDO apt-get install -y --no-install-recommends chromium chromium-driver >/dev/null; }
then
    say "installed /usr/bin/chromium"
else
    say "could not install chromium with apt-get (see the messages above); the browser tests will skip"
fi
exit 0
