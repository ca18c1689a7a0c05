"""Push: `leadtap run` waits in IMAP IDLE and ingests new mail at once — the
poll interval an hour, so only IDLE can explain a lead within seconds — and
reopens a connection that died; against the real Dovecot."""

from __future__ import annotations

import signal
import time

from datetime import timedelta

from sqlalchemy import func, select

from leadtap.core.store.db import Lead
from leadtap.ingest.idle import backoff, is_new_mail
from tests.helpers import enquiry, write_config
from tests.proxy import Proxy
from tests.test_daemon import start_run, upgrade, wait_for
from tests.test_leases import count


def leads(url: str) -> int:
    return count(url, select(func.count()).select_from(Lead))


def log_of(path) -> str:
    return path.read_text() if path.exists() else ""


def test_new_mail_becomes_a_lead_within_seconds_through_idle(tmp_path, mailbox):
    url = f"sqlite:///{tmp_path / 'leadtap.db'}"
    config = write_config(tmp_path / "leadtap.toml", url, mailbox.section(poll_interval="1h"))
    upgrade(config)
    process = start_run(config)
    try:
        wait_for(lambda: leads(url) == 0 and process.poll() is None, what="the worker")
        time.sleep(1.5)  # its first poll and the IDLE command are under way
        for n in (1, 2):
            started = time.monotonic()
            mailbox.append(enquiry(name=f"Person {n}", email=f"p{n}@client.test"))
            wait_for(lambda: leads(url) == n, timeout=10, what=f"lead {n} through IDLE")
            assert time.monotonic() - started < 5
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=15)
        assert process.returncode == 0 and '"idle_started"' in err
    finally:
        if process.poll() is None:
            process.kill()


def test_a_dropped_connection_is_reopened_and_logged_once_per_outage(tmp_path, mailbox, dovecot):
    url = f"sqlite:///{tmp_path / 'leadtap.db'}"
    with Proxy(dovecot.host, dovecot.port) as proxy:
        config = write_config(tmp_path / "leadtap.toml", url, mailbox.section(poll_interval="1h", port=proxy.port))
        upgrade(config)
        process = start_run(config)
        try:
            wait_for(lambda: proxy.accepted >= 2, what="the poll's and the IDLE connection")
            time.sleep(1)
            proxy.cut()  # the network drops every connection
            wait_for(lambda: proxy.accepted >= 3, timeout=15, what="the IDLE connection reopened")
            time.sleep(1)
            mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
            wait_for(lambda: leads(url) == 1, timeout=10, what="a lead through the reopened IDLE")
            process.send_signal(signal.SIGTERM)
            _, err = process.communicate(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == 0
    assert err.count('"idle_lost"') == 1 and err.count('"idle_restored"') == 1


def test_idle_false_leaves_the_mailbox_to_its_poll_interval(tmp_path, mailbox, dovecot):
    with Proxy(dovecot.host, dovecot.port) as proxy:
        url = f"sqlite:///{tmp_path / 'leadtap.db'}"
        config = write_config(tmp_path / "leadtap.toml", url,
                              mailbox.section(poll_interval="1h", port=proxy.port, idle=False))
        upgrade(config)
        process = start_run(config)
        try:
            wait_for(lambda: proxy.accepted >= 1, what="the first poll")
            time.sleep(2)
            assert proxy.accepted == 1  # no IDLE connection
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=15)


def test_reconnects_back_off_with_jitter_up_to_a_minute():
    delays = [backoff(n) for n in range(1, 10)]
    assert 0.8 <= delays[0] <= 1.2 and 1.6 <= delays[1] <= 2.4
    assert all(48 <= d <= 72 for d in delays[6:])


def test_only_new_messages_wake_the_mailbox():
    assert is_new_mail((3, b"EXISTS")) and is_new_mail((1, b"RECENT"))
    assert not is_new_mail((2, b"EXPUNGE")) and not is_new_mail((1, b"FETCH", (b"FLAGS", (b"\\Seen",))))
    assert not is_new_mail((b"OK", b"Still here"))


def test_a_database_that_cannot_say_who_serves_the_mailbox_pauses_idle_and_never_ends_it():
    from leadtap.ingest.idle import MailboxWatcher
    from leadtap.core.logs import configure_logging

    configure_logging("info")  # to this test's stderr (an earlier test's may be closed)
    answers = iter([RuntimeError("the database is restarting"), False])
    stops = iter([False, False, True])

    def may_watch():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    box = type("Box", (), {"name": "sales", "poll_interval": timedelta(seconds=1), "idle": None})()
    waited = []
    MailboxWatcher(box, 5, lambda: None, should_stop=lambda: next(stops), may_watch=may_watch,
                   wait=waited.append).run()

    assert waited == [1.0, 1.0]  # paused twice, never crashed
