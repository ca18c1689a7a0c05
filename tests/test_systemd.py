"""The shipped unit file: valid for systemd, and hardened (exposure ≤ 2.0)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unavailable
from tests.helpers import ROOT

UNIT = ROOT / "systemd" / "leadtap.service"


@pytest.fixture
def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        unavailable("systemd-analyze", "not on PATH (apt-get install systemd)")
    return found


@pytest.fixture
def installed_unit(tmp_path: Path) -> Path:
    """The unit with /opt/leadtap pointing at this checkout, as if installed there."""
    leadtap = Path(sys.executable).parent / "leadtap"
    if not leadtap.exists():
        unavailable("the leadtap console script", f"{leadtap} missing (pip install -e .)")
    text = UNIT.read_text().replace("/opt/leadtap/bin/leadtap", str(leadtap))
    unit = tmp_path / "leadtap.service"
    unit.write_text(text)
    return unit


def test_the_unit_file_verifies(analyze, installed_unit):
    result = subprocess.run([analyze, "verify", str(installed_unit)], capture_output=True, text=True)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if "leadtap.service" in line]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr


def test_the_unit_is_hardened_to_an_exposure_of_two_or_lower(analyze):
    result = subprocess.run([analyze, "security", "--offline=true", str(UNIT)], capture_output=True, text=True)
    match = re.search(r"Overall exposure level for leadtap\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0


def test_the_unit_speaks_the_notify_protocol_and_reloads_with_sighup():
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure",
                 "StateDirectory=leadtap", "LoadCredential="):
        assert line in text
