#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers on 127.0.0.1:5432 with a database
# "test" for the test suite; installs and starts one when there is none.
# Prints the URL the tests should use.
set -euo pipefail

url="${LEADTAP_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}"

ready() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }

if ! ready; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "postgres: apt-get install postgresql" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "postgres: starting cluster $version/main" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 || true
  for _ in $(seq 1 30); do ready && break; sleep 1; done
  ready || { echo "postgres: the server did not start" >&2; exit 1; }
fi

# A fresh install asks for a password over TCP and has no "test" database:
# give the postgres user one and create the database (as the postgres OS user).
if ! PGCONNECT_TIMEOUT=5 psql -X -q "postgresql://postgres@127.0.0.1:5432/test" -c 'select 1' >/dev/null 2>&1; then
  su postgres -c "psql -X -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >&2
  su postgres -c "psql -X -tAc \"SELECT 1 FROM pg_database WHERE datname='test'\"" | grep -q 1 \
    || su postgres -c "createdb test" >&2
  url="postgresql+psycopg://postgres:postgres@127.0.0.1:5432/test"
fi
echo "$url"
