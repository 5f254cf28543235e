#!/usr/bin/env bash
# Make sure Debian's headless-capable Chromium is at /usr/bin/chromium (the admin browser test
# drives it with Playwright; Playwright's own browser download is never used: no internet).
# Exit 0 when it is there (or was just installed), 1 with a clear message when it cannot be.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: $CHROMIUM is missing and cannot be installed here" >&2
    echo "  (needs root and apt-get). Install Debian's chromium package, e.g.:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends chromium" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists when they are empty or do not know chromium yet.
if ! apt-cache show chromium >/dev/null 2>&1; then
    echo "ensure_chromium: updating the package lists" >&2
    apt-get update -q
fi
echo "ensure_chromium: installing chromium" >&2
if ! apt-get install -y -q --no-install-recommends chromium; then
    # A stale list can name versions the mirror no longer has: refresh once and retry.
    apt-get update -q
    apt-get install -y -q --no-install-recommends chromium
fi

if [ ! -x "$CHROMIUM" ]; then
    echo "ensure_chromium: installed the chromium package but $CHROMIUM is still missing" >&2
    exit 1
fi
