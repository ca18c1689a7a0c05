#!/usr/bin/env bash
# Runs the whole test suite against real servers: the suite starts its own
# Dovecot; PostgreSQL is started (or installed) here when it is not running.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! command -v systemd-analyze >/dev/null; then  # the unit file's tests need it
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
LEADTAP_TEST_POSTGRES_URL=$(bash scripts/postgres.sh)
export LEADTAP_TEST_POSTGRES_URL
exec .venv/bin/python -m pytest "$@"
