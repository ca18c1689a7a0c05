#!/usr/bin/env bash
# Installs what leadtap needs on a fresh Debian machine (run as root):
# Dovecot (for the demo mailbox and the tests) and a virtualenv in .venv with
# leadtap and its test dependencies. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
[ -x /usr/sbin/dovecot ] || packages+=(dovecot-imapd)
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
if [ ${#packages[@]} -gt 0 ]; then
  echo "setup: apt-get install ${packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
echo "setup: installing leadtap into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
