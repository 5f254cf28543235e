#!/usr/bin/env bash
# Make sure the PostgreSQL the tests use answers (TTS_TEST_POSTGRES_URL, default
# postgres://postgres@127.0.0.1:5432/postgres); start the local Debian cluster if it is down.
set -euo pipefail
url="${TTS_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if pg_isready -d "$url" -t 3 >/dev/null 2>&1; then
    exit 0
fi
if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    version="$(ls /etc/postgresql | sort -V | tail -1)"
    echo "PostgreSQL is down; starting cluster $version/main" >&2
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do
        pg_isready -d "$url" -t 1 >/dev/null 2>&1 && exit 0
        sleep 1
    done
fi
echo "PostgreSQL does not answer at $url: start one, or point TTS_TEST_POSTGRES_URL at one" >&2
exit 1
