"""`leadtap run` as a real process: systemd notify on a real AF_UNIX socket,
signals, the SQLite single-worker lock, and the whole path end to end —
Dovecot receives an enquiry, a lead appears, its owner gets the reminder.

These wait on conditions (bounded) rather than on fixed sleeps: the daemon's
intervals are set to a second so that the real scheduler runs its real jobs.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from leadtap.core.store.engine import Database
from tests.helpers import ROOT, enquiry, write_config
from tests.smtp import SmtpServer

REMINDERS = """
[smtp]
host = "127.0.0.1"
port = {port}
security = "plain"
from = "leadtap <crm@example.com>"

[reminders]
sweep_every = "1s"

[[reminders.rules]]
name = "new-untouched"
status = "New"
after = "2s"
"""


class NotifySocket:
    """What systemd would hear: datagrams on an AF_UNIX socket, read as they come
    (the kernel queues only a few unread datagrams)."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.heard: list[str] = []
        self.open = True
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        while self.open:
            try:
                self.heard.extend(self.sock.recv(4096).decode().split("\n"))
            except (socket.timeout, OSError):
                continue

    def drain(self) -> list[str]:
        return list(self.heard)

    def close(self) -> None:
        self.open = False
        self.reader.join()
        self.sock.close()


def wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def start_run(config: Path, notify: NotifySocket | None = None, watchdog_usec: int | None = None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if notify is not None:
        env["NOTIFY_SOCKET"] = str(notify.path)
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    return subprocess.Popen([sys.executable, "-m", "leadtap", "--config", str(config), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def upgrade(config: Path) -> None:
    subprocess.run([sys.executable, "-m", "leadtap", "--config", str(config), "db", "upgrade"], check=True,
                   cwd=ROOT, capture_output=True)


def count(url: str, sql: str) -> int:
    db = Database(url)
    try:
        with db.engine.connect() as connection:
            return connection.execute(text(sql)).scalar()
    finally:
        db.dispose()


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


def test_run_end_to_end_with_notify_reload_and_sigterm(tmp_path, database_url, mailbox, smtp):
    url = database_url
    section = mailbox.section(poll_interval="1s")
    config = write_config(tmp_path / "leadtap.toml", url, section, extra=REMINDERS.format(port=smtp.port))
    upgrade(config)
    notify = NotifySocket(tmp_path / "notify.sock")
    process = start_run(config, notify, watchdog_usec=2_000_000)
    try:
        wait_for(lambda: "READY=1" in notify.drain(), what="READY=1")
        wait_for(lambda: "WATCHDOG=1" in notify.drain(), what="WATCHDOG=1")
        assert any(line.startswith("STATUS=1 mailbox(es)") for line in notify.heard)

        mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
        wait_for(lambda: count(url, "select count(*) from leads") == 1, what="the lead")
        reminder = wait_for(lambda: smtp.handler.to("ana@example.com"), what="the reminder")[0]
        assert "Jo Smith" in reminder["Subject"]
        wait_for(lambda: any("1 lead(s) today" in line for line in notify.drain()), what="STATUS with the lead")

        # SIGHUP with a bad config: refused, the running one stays.
        good = config.read_text()
        config.write_text(good + "\n[nonsense]\nkey = 1\n")
        process.send_signal(signal.SIGHUP)
        mailbox.append(enquiry(name="Kim Lee", email="kim@client.test"))
        wait_for(lambda: count(url, "select count(*) from leads") == 2, what="a lead after the bad reload")
        assert process.poll() is None

        # SIGHUP with a good config: a new owner joins the rotation.
        config.write_text(good.replace('email = "cy@example.com"', 'email = "dee@example.com"'))
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: count(url, "select count(*) from owners where email = 'dee@example.com'") == 1,
                 what="the reloaded owners")

        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        out, err = process.communicate(timeout=15)
        assert process.returncode == 0, err[-3000:]
        assert time.monotonic() - started < 10
        assert "STOPPING=1" in notify.drain()
        assert '"reload_refused"' in err and "nonsense" in err
        assert '"reloaded"' in err
    finally:
        if process.poll() is None:
            process.kill()
        notify.close()


def test_run_tells_a_new_leads_owner_right_after_the_poll(tmp_path, mailbox, smtp):
    notifications = (f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "plain"\n'
                     'from = "leadtap <crm@example.com>"\n\n[notifications]\nnew_lead = "new_lead"\n'
                     'send_every = "1h"\n')  # only the poll's own call can send it within the test
    config = write_config(tmp_path / "leadtap.toml", f"sqlite:///{tmp_path / 'leadtap.db'}",
                          mailbox.section(poll_interval="1s"), extra=notifications)
    upgrade(config)
    process = start_run(config)
    try:
        mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
        (told,) = wait_for(lambda: smtp.handler.to("ana@example.com"), what="the new-lead email")
        assert told["Subject"] == "New lead #1: Jo Smith (ACME)"
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
        assert process.returncode == 0, err[-3000:]
        assert '"notifications_done"' in err
    finally:
        if process.poll() is None:
            process.kill()


def test_a_second_run_on_one_sqlite_file_refuses_to_start(tmp_path, mailbox):
    url = f"sqlite:///{tmp_path / 'leadtap.db'}"
    config = write_config(tmp_path / "leadtap.toml", url, mailbox.section(poll_interval="1s"))
    upgrade(config)
    notify = NotifySocket(tmp_path / "notify.sock")
    first = start_run(config, notify)
    try:
        wait_for(lambda: "READY=1" in notify.drain(), what="the first worker")
        second = start_run(config)
        out, err = second.communicate(timeout=30)
        assert second.returncode == 1
        assert "another `leadtap run` (pid " in err and "is already using" in err
        assert "Traceback" not in err
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=15)
        notify.close()
    assert first.returncode == 0


def test_a_vanished_schema_ends_the_daemon_with_an_error(tmp_path, mailbox):
    url = f"sqlite:///{tmp_path / 'leadtap.db'}"
    config = write_config(tmp_path / "leadtap.toml", url, mailbox.section(poll_interval="1s"))
    upgrade(config)
    notify = NotifySocket(tmp_path / "notify.sock")
    process = start_run(config, notify)
    try:
        wait_for(lambda: "READY=1" in notify.drain(), what="READY=1")
        db = Database(url)
        with db.engine.begin() as connection:
            connection.execute(text("DROP TABLE alembic_version"))
        db.dispose()
        out, err = process.communicate(timeout=20)
        assert process.returncode == 1
        assert "leadtap db upgrade" in err
    finally:
        if process.poll() is None:
            process.kill()
        notify.close()


def test_run_refuses_an_out_of_date_schema_at_start(tmp_path, mailbox):
    config = write_config(tmp_path / "leadtap.toml", f"sqlite:///{tmp_path / 'leadtap.db'}", mailbox.section())
    out, err = start_run(config).communicate(timeout=30)
    assert "leadtap db upgrade" in err and "Traceback" not in err


def test_sigterm_during_a_sweep_finishes_the_reminder_in_hand_and_exits(tmp_path, mailbox, smtp):
    url = f"sqlite:///{tmp_path / 'leadtap.db'}"
    rules = REMINDERS.format(port=smtp.port).replace('after = "2s"', 'after = "1s"')
    config = write_config(tmp_path / "leadtap.toml", url, mailbox.section(poll_interval="1h"), extra=rules)
    upgrade(config)
    for i in range(60):
        mailbox.append(enquiry(name=f"Person {i}", email=f"p{i}@client.test"))
    subprocess.run([sys.executable, "-m", "leadtap", "--config", str(config), "poll"], check=True, cwd=ROOT,
                   capture_output=True)
    smtp.handler.delay = 0.1  # a slow server: the sweep takes about 6 s
    notify = NotifySocket(tmp_path / "notify.sock")
    process = start_run(config, notify)
    try:
        wait_for(lambda: len(smtp.messages) >= 5, what="the sweep to be under way")
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        process.communicate(timeout=15)
        assert process.returncode == 0
        assert time.monotonic() - started < 10
    finally:
        if process.poll() is None:
            process.kill()
        notify.close()
    received = len(smtp.messages)
    assert 5 <= received < 60  # it stopped mid-sweep
    assert count(url, "select count(*) from reminders where state = 'sent'") == received
    assert count(url, "select count(*) from reminders where state = 'claimed'") == 0  # the rest released


def test_the_watchdog_is_pinged_only_while_the_scheduler_makes_progress(tmp_path):
    from leadtap.scheduler.daemon import Daemon

    notify = NotifySocket(tmp_path / "notify.sock")
    daemon = Daemon(None, None, {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"})
    daemon.state.last_beat = time.monotonic() - 60  # a hung scheduler: no heartbeat for a minute
    supervisor = threading.Thread(target=daemon.supervise, args=(None,))
    supervisor.start()
    try:
        time.sleep(1.0)  # five watchdog ticks
        assert "WATCHDOG=1" not in notify.drain()
        daemon.heartbeat()  # the scheduler runs its heartbeat job again
        wait_for(lambda: "WATCHDOG=1" in notify.drain(), timeout=2, what="WATCHDOG=1")
    finally:
        daemon.state.stop.set()
        supervisor.join()
        notify.close()


def test_sigterm_ends_the_daemon_within_ten_seconds_even_with_a_hung_server(tmp_path, mailbox):
    from tests.smtp import SilentServer

    with SilentServer() as silent:
        url = f"sqlite:///{tmp_path / 'leadtap.db'}"
        config = write_config(tmp_path / "leadtap.toml", url, mailbox.section(port=silent.port, poll_interval="1s"),
                              extra='[ingest]\ntimeout = "60s"\n')
        upgrade(config)
        notify = NotifySocket(tmp_path / "notify.sock")
        process = start_run(config, notify)
        try:
            wait_for(lambda: "READY=1" in notify.drain(), what="READY=1")
            wait_for(lambda: silent.held, what="the job to hang on the silent server")
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            out, err = process.communicate(timeout=20)
            assert time.monotonic() - started < 10
            assert process.returncode == 0
            assert '"stop_deadline"' in err
        finally:
            if process.poll() is None:
                process.kill()
            notify.close()


def test_a_failing_job_is_logged_with_its_traceback_and_runs_again(tmp_path, mailbox, capsys, monkeypatch):
    from leadtap.ingest.pipeline import MailboxIngest
    from leadtap.bootstrap import build_app
    from leadtap.core.logs import configure_logging
    from leadtap.scheduler.daemon import Daemon

    url = f"sqlite:///{tmp_path / 'leadtap.db'}"
    config = write_config(tmp_path / "leadtap.toml", url, mailbox.section(poll_interval="1s"))
    upgrade(config)
    mailbox.append(enquiry())
    runs = []
    real_run = MailboxIngest.run

    def flaky_run(self):
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("a bug in the first run")
        return real_run(self)

    monkeypatch.setattr(MailboxIngest, "run", flaky_run)
    configure_logging("info")
    daemon = Daemon(build_app(str(config)), lambda: build_app(str(config)), {})

    def stop_after_the_second_run():
        wait_for(lambda: count(url, "select count(*) from leads") == 1, what="the second run's lead")
        daemon.state.stopping = True

    stopper = threading.Thread(target=stop_after_the_second_run)
    stopper.start()
    assert daemon.run() == 0  # in the main thread: it installs signal handlers
    stopper.join()
    err = capsys.readouterr().err
    failure = next(line for line in err.splitlines() if '"job_failed"' in line)
    assert "a bug in the first run" in failure and "in flaky_run" in failure  # the traceback, with its frames
    assert len(runs) >= 2


def test_a_kill_between_send_and_confirm_sends_again_after_the_lease(tmp_path, smtp, capsys):
    """At-least-once, with a real kill -9 of `leadtap remind` mid-sweep."""
    from datetime import datetime, timedelta, timezone

    from tests.test_reminders import RULE, Remind

    now = datetime.now(timezone.utc)
    remind = Remind(tmp_path, f"sqlite:///{tmp_path / 'leadtap.db'}", smtp.port, capsys)
    remind.configure(RULE)
    for name in ("Jo Smith", "Kim Lee", "Lou Reed"):
        remind.add_lead(name, "ana@example.com", since=now - timedelta(days=3))
    smtp.handler.delay = 0.5
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "leadtap", "--config", str(remind.path), "remind"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    wait_for(lambda: len(smtp.messages) >= 1, what="the first reminder")
    process.kill()
    process.communicate()
    smtp.handler.delay = 0
    url = f"sqlite:///{tmp_path / 'leadtap.db'}"
    assert count(url, "select count(*) from reminders where state = 'sent'") == 0  # never confirmed
    assert remind.sweep(now + timedelta(minutes=5)).sent == 0  # the dead sweep's lease still runs
    assert remind.sweep(now + timedelta(minutes=31)).sent == 3
    subjects = [m["Subject"] for m in smtp.messages]
    assert len(subjects) == 4 and len(set(subjects)) == 3  # one reminder went out twice, none was lost


def test_a_hung_mailbox_never_delays_the_others(tmp_path, mailbox, dovecot):
    from tests.helpers import Mailbox
    from tests.smtp import SilentServer

    other = Mailbox(dovecot, mailbox.user + "b", dovecot.password)
    with SilentServer() as silent:
        url = f"sqlite:///{tmp_path / 'leadtap.db'}"
        sections = mailbox.section(name="hung", port=silent.port, poll_interval="1s") + \
            other.section(name="sales", poll_interval="1s")
        config = write_config(tmp_path / "leadtap.toml", url, sections, extra='[ingest]\ntimeout = "60s"\n')
        upgrade(config)
        notify = NotifySocket(tmp_path / "notify.sock")
        process = start_run(config, notify)
        try:
            wait_for(lambda: silent.held, what="the hung mailbox's job to hang")
            other.append(enquiry(email="arrives@client.test"))
            wait_for(lambda: count(url, "select count(*) from leads") == 1, timeout=10, what="the other mailbox")
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=20)
            notify.close()


def test_a_database_outage_in_any_job_is_one_failed_line_without_a_traceback(capsys):
    """As the ingest pass says it: the presence, reminder and notification jobs
    too, while PostgreSQL restarts under `leadtap run` (retried at their next run)."""
    from apscheduler.events import EVENT_JOB_ERROR, JobExecutionEvent
    from sqlalchemy.exc import OperationalError

    from leadtap.core.logs import configure_logging
    from leadtap.scheduler.daemon import Daemon

    configure_logging()
    daemon = Daemon(None, None, {})
    outage = OperationalError("SELECT 1", {}, Exception("connection to server failed: Connection refused"))
    for job in ("presence", "reminders", "ingest:sales"):
        daemon.on_job_event(JobExecutionEvent(EVENT_JOB_ERROR, job, None, None, exception=outage,
                                              traceback="Traceback (most recent call last): ..."))
    daemon.on_job_event(JobExecutionEvent(EVENT_JOB_ERROR, "reminders", None, None, exception=KeyError("bug"),
                                          traceback="Traceback (most recent call last): ..."))

    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    assert [(e["event"], e.get("mailbox")) for e in events] == [
        ("presence_failed", None), ("reminders_failed", None), ("ingest_failed", "sales"), ("job_failed", None)]
    assert all("traceback" not in e for e in events[:3]) and "traceback" in events[3]
    assert events[0]["error"] == "database unavailable: connection to server failed: Connection refused"
