#!/usr/bin/env bash
# Sets leadtap up and runs it on an embedded default: a local Dovecot holding a
# few sample enquiries, one ingest pass into SQLite (demo-run/leadtap.db), then
# the leads it created. Extra arguments go to `leadtap demo` (--keep: the
# Dovecot stays up until Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/leadtap demo --dir demo-run "$@"
