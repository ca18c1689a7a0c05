"""The new-lead email: owed in the transaction that makes a lead someone's,
sent after it commits — claimed first, once per (lead, owner), retried on a
4xx — against Dovecot and a real SMTP server (aiosmtpd), on SQLite and
PostgreSQL, with the clock injected."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from leadtap.core.store.db import Notification
from leadtap.bootstrap import build_app
from tests.helpers import enquiry, run_leadtap, write_config
from tests.smtp import SmtpServer
from tests.test_ingest import Env, env  # noqa: F401  (the fixture)
from tests.test_workers import run_at_once, start_poll

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


def notifications_config(smtp_port: int, template: str = "new_lead") -> str:
    return (f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "plain"\ntimeout = "5s"\n'
            f'from = "leadtap <crm@example.com>"\n\n[notifications]\nnew_lead = "{template}"\n')


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


@pytest.fixture
def notified(env, mailbox, smtp):
    """Notifications on; one enquiry waiting in the mailbox."""
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test", company="Client Ltd"))
    env.configure(mailbox.section(), extra=notifications_config(smtp.port))
    env.upgrade()
    return env


def owed(env: Env) -> list[tuple[int, str, str, int]]:
    app = build_app(str(env.path))
    try:
        with app.db.transaction() as session:
            return [(n.lead_id, n.recipient, n.state, n.attempts)
                    for n in session.scalars(select(Notification).order_by(Notification.id))]
    finally:
        app.close()


def send(env: Env, at: datetime):
    app = build_app(str(env.path))
    try:
        return app.notification_sender(clock=lambda: at).run()
    finally:
        app.close()


def test_a_new_leads_owner_is_emailed_once_after_the_poll_commits(notified, smtp):
    code, out, _ = notified.cli("poll")

    assert code == 0 and "notifications: 1 sent" in out
    (message,) = smtp.messages
    assert message["To"] == "ana@example.com"
    assert message["Subject"] == "New lead #1: Jo Smith (Client Ltd)"
    assert message["X-Leadtap"] == "notification" and message["Auto-Submitted"] == "auto-generated"
    assert "Lead #1 is yours now" in message.get_body(("plain",)).get_content()
    assert owed(notified) == [(1, "ana@example.com", "sent", 0)]
    notified.cli("poll")
    notified.cli("notify")
    assert len(smtp.messages) == 1


def test_a_reassignment_tells_the_new_owner_and_never_twice(notified, smtp):
    notified.poll()

    code, out, _ = notified.cli("leads", "assign", "1", "ben@example.com")
    assert code == 0 and "notifications: 1 sent" in out
    notified.cli("leads", "assign", "1", "ana@example.com")  # back to ana: she was told already

    assert [m["To"] for m in smtp.messages] == ["ana@example.com", "ben@example.com"]
    assert [row[1:3] for row in owed(notified)] == [("ana@example.com", "sent"), ("ben@example.com", "sent")]


def test_leadtaps_own_notification_in_a_watched_mailbox_is_no_lead(notified, smtp, mailbox):
    notified.poll()
    mailbox.append(smtp.messages[0].as_bytes())

    code, out, _ = notified.cli("poll")

    assert code == 0 and "1 not a lead" in out
    assert len(notified.leads()) == 1


def test_a_4xx_answer_is_retried_after_a_backoff_and_a_5xx_is_not(notified, smtp, mailbox):
    smtp.handler.refuse["ana@example.com"] = "450 4.2.1 mailbox busy"
    smtp.handler.refuse["ben@example.com"] = "550 5.1.1 no such user"
    mailbox.append(enquiry(name="Kim Lee", email="kim@client.test"))
    notified.poll()  # jo → ana, kim → ben; sent at the real time: both refused
    assert [row[2:] for row in owed(notified)] == [("pending", 1), ("failed", 0)]

    del smtp.handler.refuse["ana@example.com"]
    later = datetime.now(timezone.utc)
    assert send(notified, later).sent == 0  # the backoff (a minute) has not run out
    report = send(notified, later + timedelta(minutes=2))

    assert (report.sent, report.failed) == (1, 0)
    assert [m["To"] for m in smtp.messages] == ["ana@example.com"]
    code, out, _ = notified.cli("notifications", "list")
    assert "failed  → ben@example.com  (SMTP 127.0.0.1" in out and "550 5.1.1 no such user" in out


def test_a_notification_refused_max_attempts_times_is_given_up(notified, smtp):
    smtp.handler.refuse["ana@example.com"] = "451 4.3.0 try later"
    notified.poll()
    at = datetime.now(timezone.utc)
    for _ in range(7):  # max_attempts is 8; the poll made the first
        at += timedelta(hours=2)
        send(notified, at)

    assert owed(notified) == [(1, "ana@example.com", "failed", 8)]
    assert send(notified, at + timedelta(days=1)).sent == 0


def test_an_smtp_outage_loses_nothing_and_counts_no_attempt(env, mailbox, tmp_path):
    with SmtpServer() as smtp:
        port = smtp.port
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
    env.configure(mailbox.section(), extra=notifications_config(port))
    env.upgrade()

    code, out, _ = env.cli("poll")

    assert code == 0 and "1 new lead" in out  # the lead is in: sending is after the commit
    assert owed(env) == [(1, "ana@example.com", "pending", 0)]


def reassigned_while_the_server_was_down(env: Env, mailbox, smtp) -> None:
    """Lead 1 made (ana's) and given to ben while nothing listened on the SMTP port; the server is back."""
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
    env.configure(mailbox.section(), extra=notifications_config(smtp.port).replace(f"port = {smtp.port}", "port = 1"))
    env.upgrade()
    env.poll()
    env.cli("leads", "assign", "1", "ben@example.com")
    env.configure(mailbox.section(), extra=notifications_config(smtp.port))


def test_a_lead_reassigned_before_its_email_went_out_tells_only_the_new_owner(env, mailbox, smtp):
    reassigned_while_the_server_was_down(env, mailbox, smtp)

    report = send(env, datetime.now(timezone.utc))

    assert report.sent == 1  # ana's was dropped by the assign's own send, before it tried the server
    assert [m["To"] for m in smtp.messages] == ["ben@example.com"]
    assert [row[1:3] for row in owed(env)] == [("ana@example.com", "dropped"), ("ben@example.com", "sent")]


def test_an_owner_whose_email_was_dropped_is_told_when_the_lead_comes_back(env, mailbox, smtp):
    reassigned_while_the_server_was_down(env, mailbox, smtp)  # ana's email is dropped before it went out

    code, out, _ = env.cli("leads", "assign", "1", "ana@example.com")

    assert code == 0 and "notifications: 1 sent" in out
    assert [m["To"] for m in smtp.messages] == ["ana@example.com"]
    assert [row[1:3] for row in owed(env)] == [("ana@example.com", "sent"), ("ben@example.com", "dropped")]


def test_a_server_that_stops_answering_mid_email_costs_that_email_an_attempt(notified, smtp):
    notified.configure(*notified.sections, extra=notifications_config(smtp.port).replace('timeout = "5s"',
                                                                                         'timeout = "1s"'))
    smtp.handler.delay = 3  # DATA is answered after the client's timeout

    code, out, _ = notified.cli("poll")

    assert code == 0 and "notifications: 0 sent, 1 to retry" in out
    assert owed(notified) == [(1, "ana@example.com", "pending", 1)]


def test_check_renders_each_template_with_the_context_it_is_sent_with(notified, smtp, tmp_path):
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "new_lead.subject.j2").write_text("{{ rule.name }}")  # a reminder's key: not in a notification
    (custom / "new_lead.txt.j2").write_text("{{ lead.name }}")
    extra = notifications_config(smtp.port) + f'\n[reminders]\ntemplates_dir = "{custom}"\n'
    notified.configure(*notified.sections, extra=extra)

    code, out, _ = notified.cli("check")

    assert code == 1 and "FAIL  template new_lead: template new_lead.subject.j2" in out and "'rule'" in out


def test_check_renders_the_new_lead_template_and_refuses_a_missing_one(notified, smtp, tmp_path):
    code, out, _ = notified.cli("check")
    assert "ok    template new_lead: renders (text and HTML)" in out

    notified.configure(*notified.sections, extra=notifications_config(smtp.port, template="welcome"))
    code, out, _ = notified.cli("check")
    assert code == 1 and "FAIL  template welcome: template welcome.subject.j2 not found" in out


def test_two_workers_tell_each_owner_once(tmp_path, postgres_url, mailbox, smtp):
    for i in range(40):
        mailbox.append(enquiry(name=f"Person {i}", email=f"p{i}@client.test"))
    smtp.handler.delay = 0.005  # the two senders' claims interleave
    config = write_config(tmp_path / "leadtap.toml", postgres_url, mailbox.section(),
                          extra="[ingest]\nbatch_size = 4\n" + notifications_config(smtp.port))
    assert run_leadtap("db", "upgrade", config=config).returncode == 0

    results = run_at_once(start_poll(config), start_poll(config))

    assert [code for code, _, _ in results] == [0, 0], results
    told = sorted((m["To"], m["Subject"]) for m in smtp.messages)
    assert len(told) == 40 and len(set(told)) == 40
    assert {to for to, _ in told} == {"ana@example.com", "ben@example.com", "cy@example.com"}


def test_an_smtp_outage_is_said_once_and_its_end_too(env, mailbox):
    """Every sweep with mail finds the server down: the log says so once an
    outage (not once a sweep, all day long), then says when mail goes out again."""
    import io

    from leadtap.core.logs import configure_logging
    from leadtap.scheduler.metrics import Metrics

    smtp = SmtpServer()  # its port chosen, nothing listening yet
    mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
    env.configure(mailbox.section(), extra=notifications_config(smtp.port))
    env.upgrade()
    app = build_app(str(env.path))
    stream = io.StringIO()
    try:
        configure_logging("info", stream=stream)
        assert app.ingest_mailboxes()[0].error is None
        at = datetime.now(timezone.utc)
        for minutes in range(4):
            assert app.notification_sender(clock=lambda: at + timedelta(minutes=minutes)).run().sent == 0
        assert stream.getvalue().count("notification_failed") == 1, stream.getvalue()
        assert "said once until an email goes out again" in stream.getvalue()
        metrics = Metrics()
        metrics.smtp(app.smtp_down)
        assert metrics.registry.get_sample_value("leadtap_smtp_ok") == 0
        with smtp:
            assert app.notification_sender(clock=lambda: at + timedelta(minutes=5)).run().sent == 1
        assert stream.getvalue().count("smtp_back") == 1 and "notification_sent" in stream.getvalue()
        metrics.smtp(app.smtp_down)
        assert not app.smtp_down and metrics.registry.get_sample_value("leadtap_smtp_ok") == 1
    finally:
        configure_logging()
        app.close()
