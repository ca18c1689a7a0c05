#!/usr/bin/env bash
# Sets leadtap up and runs it on an embedded default: a local Dovecot holding a
# few sample enquiries, one ingest pass into SQLite (demo-run/leadtap.db), then
# the leads it created.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m leadtap.demo demo-run
