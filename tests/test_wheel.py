"""The installable package: the wheel is built, installed with its
dependencies into a fresh virtualenv, and run from another directory against
the real Dovecot and SMTP server — the templates, the demo mail and the
example config come with it, and it installs one top-level name."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.helpers import ROOT, enquiry, write_config
from tests.smtp import SmtpServer
from tests.test_daemon import REMINDERS

NOTIFICATIONS = '\n[notifications]\nnew_lead = "new_lead"\n'


def run(*command, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv with the built wheel installed (and nothing else of the checkout)."""
    work = tmp_path_factory.mktemp("wheel")
    # setuptools builds in the checkout's build/ and never empties it: a file renamed or removed since
    # the last build (a migration) would ship beside its successor
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", work / "dist", ROOT, cwd=work)
    (wheel,) = (work / "dist").glob("leadtap-*.whl")
    run(sys.executable, "-m", "venv", work / "venv", cwd=work)
    run(work / "venv" / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel,
        cwd=work)
    return work


def test_the_wheel_holds_one_top_level_name_and_the_shipped_files(installed):
    (wheel,) = (installed / "dist").glob("leadtap-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"leadtap", wheel.name.split("-py3")[0] + ".dist-info"}
    for shipped in ("leadtap/templates/stale_lead.txt.j2", "leadtap/templates/new_lead.subject.j2",
                    "leadtap/templates/task_overdue.html.j2", "leadtap/demo_mail/01-contact-form.eml",
                    "leadtap/example/leadtap.example.toml", "leadtap/core/store/migrations/versions/0005_notifications.py",
                    "leadtap/core/store/migrations/script.py.mako"):
        assert shipped in names


def test_the_installed_commands_run_from_another_directory(installed, tmp_path, mailbox):
    leadtap = installed / "venv" / "bin" / "leadtap"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with SmtpServer() as smtp:
        config = write_config(tmp_path / "leadtap.toml", f"sqlite:///{tmp_path / 'leadtap.db'}", mailbox.section(),
                              extra=REMINDERS.format(port=smtp.port).replace('after = "2s"', 'after = "1s"') + NOTIFICATIONS)
        mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))

        run(leadtap, "--config", config, "db", "upgrade", cwd=elsewhere)
        checked = run(leadtap, "--config", config, "check", cwd=elsewhere).stdout
        polled = run(leadtap, "--config", config, "poll", cwd=elsewhere).stdout
        time.sleep(1.2)  # the rule's `after`: let the lead become stale for the real clock
        reminded = run(leadtap, "--config", config, "remind", cwd=elsewhere).stdout
        example = run(leadtap, "example-config", cwd=elsewhere).stdout

        assert "ok    template stale_lead" in checked and "ok    template new_lead" in checked
        assert "1 new lead" in polled and "notifications: 1 sent" in polled
        assert "1 sent" in reminded
        told, reminder = sorted(smtp.messages, key=lambda m: m["X-Leadtap"])  # notification < reminder
        assert (told["X-Leadtap"], reminder["X-Leadtap"]) == ("notification", "reminder")
        assert told["Subject"].startswith("New lead #1: Jo Smith")
        assert reminder["Subject"].startswith('Lead #1 Jo Smith has been "New"')
        assert example.startswith("# An example leadtap configuration")
    where = run(installed / "venv" / "bin" / "python", "-c",
                "import leadtap.core.store.db, leadtap.scheduler.render as r; print(leadtap.core.store.db.__file__, r.SHIPPED)",
                cwd=elsewhere).stdout
    assert str(installed / "venv") in where and str(ROOT) not in where
