"""Reminders to owners of stale leads, sent to a real SMTP server (aiosmtpd),
on SQLite and PostgreSQL, with the clock injected — never slept on."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select, update

from leadtap.core.store.db import Lead, Owner, Reminder
from leadtap.bootstrap import build_app
from leadtap.cli import main
from tests.smtp import SilentServer, SmtpServer

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)  # a Monday
DAY = timedelta(days=1)

OWNERS = """
[[owners]]
email = "ana@example.com"
name = "Ana"
roles = ["sales"]

[[owners]]
email = "ben@example.com"
name = "Ben"
roles = ["sales"]

[[owners]]
email = "sue@example.com"
name = "Sue"
roles = ["sales-lead"]
"""


@pytest.fixture
def smtp():
    with SmtpServer() as server:
        yield server


class Remind:
    """A config with reminder rules, a database with leads, and sweeps at chosen times."""

    def __init__(self, tmp_path: Path, database_url: str, smtp_port: int, capsys):
        self.path = tmp_path / "leadtap.toml"
        self.tmp_path = tmp_path
        self.database_url = database_url
        self.smtp_port = smtp_port
        self.capsys = capsys

    def configure(self, rules: str, reminders: str = "", smtp: str = "") -> None:
        smtp = smtp or f'host = "127.0.0.1"\nport = {self.smtp_port}\nsecurity = "plain"\ntimeout = "5s"\n'
        self.path.write_text(
            f'[database]\nurl = "{self.database_url}"\n\n'
            f'[smtp]\n{smtp}from = "leadtap <crm@example.com>"\n\n'
            f'[reminders]\ntimezone = "Europe/Vilnius"\n{reminders}\n{OWNERS}\n{rules}'
        )
        assert main(["--config", str(self.path), "db", "upgrade"]) == 0

    def app(self):
        return build_app(str(self.path))

    def add_lead(self, name: str, owner: str | None, status: str = "New", since: datetime = NOW - 3 * DAY) -> int:
        app = self.app()
        try:
            db = app.ready_database()
            with db.transaction() as session:
                owner_id = session.scalar(select(Owner.id).where(Owner.email == owner)) if owner else None
                lead = Lead(name=name, email=f"{name.split()[0].lower()}@client.test", source="Email",
                            status=status, status_changed_at=since, owner_id=owner_id, mailbox="sales",
                            contact=None, received_at=since, created_at=since, fields={})
                session.add(lead)
                session.flush()
                return lead.id
        finally:
            app.close()

    def set_status(self, lead_id: int, status: str, at: datetime) -> None:
        app = self.app()
        try:
            with app.db.transaction() as session:
                session.execute(update(Lead).where(Lead.id == lead_id).values(status=status, status_changed_at=at))
        finally:
            app.close()

    def snooze(self, lead_id: int, until: datetime) -> None:
        app = self.app()
        try:
            with app.db.transaction() as session:
                session.execute(update(Lead).where(Lead.id == lead_id).values(snoozed_until=until))
        finally:
            app.close()

    def send_notifications(self, at: datetime):
        app = self.app()
        try:
            return app.notification_sender(clock=lambda: at).run()
        finally:
            app.close()

    def sweep(self, at: datetime, dry_run: bool = False):
        app = self.app()
        try:
            return app.reminder_sweep(clock=lambda: at).run(dry_run=dry_run)
        finally:
            app.close()

    def cli(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["--config", str(self.path), *args])
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def remind(tmp_path, database_url, smtp, capsys) -> Remind:
    return Remind(tmp_path, database_url, smtp.port, capsys)


RULE = """
[[reminders.rules]]
name = "new-untouched"
status = "New"
after = "2d"
"""


def test_a_stale_lead_is_reminded_once_per_stay(remind, smtp):
    remind.configure(RULE)
    lead = remind.add_lead("Jo Smith", "ana@example.com")
    remind.add_lead("Fresh Lead", "ben@example.com", since=NOW - timedelta(hours=5))

    report = remind.sweep(NOW)
    assert (report.due, report.sent) == (1, 1)
    (message,) = smtp.messages
    assert message["To"] == "ana@example.com"
    assert "Jo Smith" in message["Subject"] and '"New"' in message["Subject"]
    assert message["Auto-Submitted"] == "auto-generated" and message["X-Leadtap"] == "reminder"
    assert message.get_content_type() == "multipart/alternative"

    assert remind.sweep(NOW + DAY).sent == 0  # once per stay
    remind.set_status(lead, "Attempting", NOW + DAY)
    remind.set_status(lead, "New", NOW + 2 * DAY)  # a new stay
    remind.sweep(NOW + 3 * DAY)
    assert len(smtp.handler.to("ana@example.com")) == 1
    remind.sweep(NOW + 4 * DAY)
    assert len(smtp.handler.to("ana@example.com")) == 2


def test_a_snoozed_lead_waits_until_its_snooze_ends(remind, smtp):
    remind.configure(RULE)
    lead = remind.add_lead("Jo Smith", "ana@example.com")
    remind.snooze(lead, NOW + DAY)

    assert remind.sweep(NOW).due == 0
    assert remind.sweep(NOW + DAY + timedelta(minutes=1)).sent == 1


def test_repeat_every_reminds_again_while_the_lead_stays(remind, smtp):
    remind.configure(RULE + 'repeat_every = "1d"\n')
    remind.add_lead("Jo Smith", "ana@example.com", since=NOW - 2 * DAY)
    assert remind.sweep(NOW).sent == 1
    assert remind.sweep(NOW + DAY / 2).sent == 0
    assert remind.sweep(NOW + DAY).sent == 1
    assert remind.sweep(NOW + 3 * DAY).sent == 1  # missed sweeps do not pile up
    assert len(smtp.messages) == 3


def test_from_the_nth_reminder_the_escalation_role_is_emailed_too(remind, smtp):
    remind.configure(RULE + 'repeat_every = "1d"\nescalate_after = 2\nescalate_to_role = "sales-lead"\n')
    remind.add_lead("Jo Smith", "ana@example.com", since=NOW - 2 * DAY)
    remind.sweep(NOW)
    assert [m["To"] for m in smtp.messages] == ["ana@example.com"]
    remind.sweep(NOW + DAY)
    assert [m["To"] for m in smtp.messages[1:]] == ["ana@example.com", "sue@example.com"]
    escalation = smtp.handler.to("sue@example.com")[0]
    assert escalation["Subject"].startswith("[Escalation]")
    assert "owned by Ana" in escalation.get_body(("plain",)).get_content()


def test_a_lead_without_an_owner_goes_to_the_escalation_role(remind, smtp):
    remind.configure(RULE + 'escalate_after = 3\nescalate_to_role = "sales-lead"\n')
    remind.add_lead("Nobody's Lead", None)
    assert remind.sweep(NOW).sent == 1
    assert [m["To"] for m in smtp.messages] == ["sue@example.com"]


def test_a_disabled_rule_sends_nothing(remind, smtp):
    remind.configure(RULE + "enabled = false\n")
    remind.add_lead("Jo Smith", "ana@example.com")
    assert remind.sweep(NOW).due == 0
    assert smtp.messages == []


def test_outside_business_hours_reminders_wait(remind, smtp):
    remind.configure(RULE, reminders='business_hours = "Mon-Fri 08:00-18:00"\n')
    remind.add_lead("Jo Smith", "ana@example.com")
    saturday = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)
    assert remind.sweep(saturday).skipped
    early_monday = datetime(2026, 11, 30, 5, 30, tzinfo=timezone.utc)  # 07:30 in Vilnius
    assert remind.sweep(early_monday).skipped
    assert smtp.messages == []
    assert remind.sweep(datetime(2026, 11, 30, 6, 30, tzinfo=timezone.utc)).sent == 1  # 08:30 in Vilnius


def test_digest_mode_sends_one_email_per_owner(remind, smtp):
    remind.configure(RULE, reminders="digest = true\n")
    remind.add_lead("Jo Smith", "ana@example.com")
    remind.add_lead("Kim Lee", "ana@example.com")
    remind.add_lead("Lou Reed", "ben@example.com")
    report = remind.sweep(NOW)
    assert (report.due, report.sent) == (3, 3)
    assert sorted(m["To"] for m in smtp.messages) == ["ana@example.com", "ben@example.com"]
    ana = smtp.handler.to("ana@example.com")[0]
    assert ana["Subject"] == "2 leads waiting for you"
    text = ana.get_body(("plain",)).get_content()
    assert "Jo Smith" in text and "Kim Lee" in text


def test_untrusted_lead_data_cannot_inject_headers_or_html(remind, smtp):
    remind.configure(RULE)
    remind.add_lead("<b>Jo</b>\r\nBcc: evil@attacker.test", "ana@example.com")
    remind.sweep(NOW)
    (message,) = smtp.messages
    assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
    assert message["Bcc"] is None and "evil@attacker.test" not in message["X-Test-Recipients"]
    html = message.get_body(("html",)).get_content()
    assert "&lt;b&gt;Jo&lt;/b&gt;" in html and "<b>Jo</b>" not in html


def test_a_refused_recipient_does_not_stop_the_others(remind, smtp):
    remind.configure(RULE)
    remind.add_lead("Jo Smith", "ana@example.com")
    remind.add_lead("Kim Lee", "ben@example.com")
    smtp.handler.refuse["ana@example.com"] = "550 5.1.1 no such user here"
    report = remind.sweep(NOW)
    assert (report.sent, report.refused) == (1, 1)
    assert [m["To"] for m in smtp.messages] == ["ben@example.com"]
    assert remind.sweep(NOW + timedelta(hours=1)).due == 0  # refused for good: not retried


def test_a_dropped_connection_is_reopened_and_the_sweep_goes_on(remind, smtp):
    remind.configure(RULE)
    for name in ("Jo Smith", "Kim Lee", "Lou Reed"):
        remind.add_lead(name, "ana@example.com")
    smtp.handler.drop_after_each = True
    report = remind.sweep(NOW)
    assert report.sent == 3
    assert len(smtp.messages) == 3


def test_a_server_that_never_answers_times_out_and_the_reminder_stays_due(remind, smtp):
    with SilentServer() as silent:
        remind.configure(RULE, smtp=f'host = "127.0.0.1"\nport = {silent.port}\nsecurity = "plain"\ntimeout = "1s"\n')
        remind.add_lead("Jo Smith", "ana@example.com")
        report = remind.sweep(NOW)
    assert (report.sent, report.released) == (0, 1)
    remind.configure(RULE)  # the server is back
    assert remind.sweep(NOW + timedelta(minutes=15)).sent == 1
    assert len(smtp.messages) == 1


def test_a_claim_left_by_a_crash_is_sent_again_after_its_lease(remind, smtp):
    """At-least-once: a process that died between the send and the commit left
    its claim unconfirmed; once the lease runs out another sweep sends it."""
    remind.configure(RULE)
    lead = remind.add_lead("Jo Smith", "ana@example.com")
    app = remind.app()
    try:
        with app.db.transaction() as session:
            stay = session.get(Lead, lead).status_changed_at
            session.add(Reminder(lead_id=lead, rule="new-untouched", stay_started_at=stay, repeat=0,
                                 recipient="ana@example.com", state="claimed", token="dead", claimed_at=NOW))
    finally:
        app.close()
    assert remind.sweep(NOW + timedelta(minutes=5)).sent == 0
    assert remind.sweep(NOW + timedelta(minutes=31)).sent == 1


def test_dry_run_prints_who_would_get_what_and_sends_nothing(remind, smtp):
    remind.configure(RULE)
    remind.add_lead("Jo Smith", "ana@example.com")
    code, out, _ = remind.cli("remind", "--dry-run")
    assert code == 0 and "would send to ana@example.com" in out
    assert smtp.messages == []
    code, out, _ = remind.cli("remind")
    assert code == 0 and "1 sent" in out
    code, out, _ = remind.cli("reminders", "list")
    assert "new-untouched" in out and "ana@example.com" in out


def test_check_renders_every_template_and_catches_a_typo(remind, smtp, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "stale_lead.txt.j2").write_text("Hello {{ recipient.nmae }}\n")
    remind.configure(RULE, reminders=f'templates_dir = "{templates}"\n')
    code, out, _ = remind.cli("check")
    assert code == 1
    assert "FAIL  template stale_lead" in out and "nmae" in out
    (templates / "stale_lead.txt.j2").write_text("Hello {{ recipient.name }}\n")
    code, out, _ = remind.cli("check")
    assert "ok    template stale_lead" in out and "ok    smtp" in out


def test_two_remind_processes_at_once_on_postgres_send_each_reminder_once(tmp_path, postgres_url, smtp, capsys):
    import os
    import subprocess
    import sys

    from tests.helpers import ROOT

    remind = Remind(tmp_path, postgres_url, smtp.port, capsys)
    remind.configure(RULE)
    for i in range(40):
        remind.add_lead(f"Lead {i}", "ana@example.com" if i % 2 else "ben@example.com")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "leadtap", "--config", str(remind.path), "remind"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    subjects = [m["Subject"] for m in smtp.messages]
    assert len(subjects) == 40 and len(set(subjects)) == 40


def test_a_template_broken_at_run_time_fails_its_reminders_and_they_stay_due(remind, smtp, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "stale_lead.txt.j2").write_text("Hello {{ recipient.nmae }}\n")
    remind.configure(RULE, reminders=f'templates_dir = "{templates}"\n')
    remind.add_lead("Jo Smith", "ana@example.com")
    report = remind.sweep(NOW)
    assert (report.sent, report.released) == (0, 1)
    (templates / "stale_lead.txt.j2").write_text("Hello {{ recipient.name }}\n")  # fixed
    assert remind.sweep(NOW + timedelta(minutes=15)).sent == 1


def test_a_temporary_refusal_is_retried_by_a_later_sweep(remind, smtp):
    remind.configure(RULE)
    remind.add_lead("Jo Smith", "ana@example.com")
    smtp.handler.refuse["ana@example.com"] = "450 4.2.0 greylisted, try again later"
    report = remind.sweep(NOW)
    assert (report.sent, report.refused, report.released) == (0, 0, 1)
    del smtp.handler.refuse["ana@example.com"]
    assert remind.sweep(NOW + timedelta(minutes=15)).sent == 1


def test_a_sender_refused_by_the_server_ends_the_sweep_and_loses_nothing(remind, smtp):
    remind.configure(RULE)
    for name in ("Jo Smith", "Kim Lee", "Lou Reed"):
        remind.add_lead(name, "ana@example.com")
    smtp.handler.refuse_sender = "553 5.7.1 sender not allowed"
    report = remind.sweep(NOW)
    assert (report.sent, report.refused, report.released) == (0, 0, 3)
    smtp.handler.refuse_sender = ""  # the setup is fixed
    assert remind.sweep(NOW + timedelta(minutes=15)).sent == 3


def test_an_escalation_that_reached_one_recipient_is_still_retried_for_the_other(remind, smtp):
    remind.configure(RULE + 'escalate_after = 1\nescalate_to_role = "sales-lead"\n')
    remind.add_lead("Jo Smith", "ana@example.com")
    smtp.handler.refuse["ana@example.com"] = "451 4.3.0 try later"
    report = remind.sweep(NOW)
    assert (report.sent, report.released) == (1, 1)
    assert [m["To"] for m in smtp.messages] == ["sue@example.com"]
    del smtp.handler.refuse["ana@example.com"]
    assert remind.sweep(NOW + timedelta(minutes=15)).sent == 1
    assert sorted(m["To"] for m in smtp.messages) == ["ana@example.com", "sue@example.com"]


@pytest.mark.parametrize("name", ["Evil\x0cBcc: x@evil.test", "Jo\x0bthanks for your message", "Jo\u2028Reply-To: a@b"])
def test_no_character_in_a_lead_name_breaks_the_header_block_or_the_sweep(remind, smtp, name):
    remind.configure(RULE)
    remind.add_lead(name, "ana@example.com")
    remind.add_lead("Kim Lee", "ben@example.com")
    report = remind.sweep(NOW)
    assert report.sent == 2
    for message in smtp.messages:
        assert message["X-Leadtap"] == "reminder" and message["Auto-Submitted"] == "auto-generated"
        assert message["Bcc"] is None and message["Reply-To"] is None


def test_a_claim_taken_over_is_neither_confirmed_nor_released_by_its_first_holder(remind, smtp):
    from leadtap.core.store.reminders import claim, find_due, mark_sent, release

    remind.configure(RULE)
    remind.add_lead("Jo Smith", "ana@example.com")
    app = remind.app()
    try:
        with app.db.transaction() as session:
            (due,) = find_due(session, app.config.reminders.rules, (), NOW).due
            key = due.for_recipient("ana@example.com")
            assert claim(session, key, "first", NOW)
            assert not claim(session, key, "second", NOW + timedelta(minutes=5))  # the lease still runs
            assert claim(session, key, "second", NOW + timedelta(minutes=31))  # taken over
            assert mark_sent(session, [(key, None)], "first", NOW) == 0
            release(session, [key], "first")
            assert mark_sent(session, [(key, None)], "second", NOW) == 1
    finally:
        app.close()


def test_a_reminder_says_what_automation_waits_for(remind, smtp):
    remind.configure(RULE, reminders="digest = false\n")
    lead = remind.add_lead("Jo Smith", "ana@example.com")
    app = remind.app()
    try:
        with app.db.transaction() as session:
            session.get(Lead, lead).blocked = "reply received; not moved to Contacted: needs phone"
    finally:
        app.close()

    remind.sweep(NOW)

    (message,) = smtp.messages
    assert "Waiting for you: reply received; not moved to Contacted: needs phone." in message.get_body(
        ("plain",)).get_content()
    assert "<b>Waiting for you:</b> reply received" in message.get_body(("html",)).get_content()
