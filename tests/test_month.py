"""A month of a sales team's life, with the shipped example config, on
Dovecot, a real SMTP server and SQLite or PostgreSQL — the clock injected
(every step names its time), the stream seeded: enquiries each weekday (one
forwarded by an owner from her own inbox), outreach BCC'd to the mailbox
(proposals attached), contacts' answers, calls logged, leads qualified and
disqualified, deals moved, won and lost, an e-signature service's mail, an
owner away for a week, the reminder sweep and the outbox every two hours.

What must hold, checked as it happens and at the end: no reminder,
escalation, deal warning or reassignment about a closed lead or a closed
deal; nothing reminded to the owner who is away; every lead and its deal
tell one story (a won deal's lead is qualified, a lost deal's lead is
closed, a disqualified lead's deal is closed, a closed lead has no open
task but its onboarding's)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from email.utils import parsedate_to_datetime
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import func, select

from leadtap.bootstrap import build_app
from leadtap.cli import main
from leadtap.core.rules.lifecycle import Refused
from leadtap.core.store import notifications
from leadtap.core.store.db import Activity, Lead, Notification, Opportunity, Owner, Reminder, Task
from leadtap.core.use_cases import changes, deal_changes, owners
from tests.helpers import enquiry, plain_message
from tests.smtp import SmtpServer

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 11, 2, 6, 0, tzinfo=timezone.utc)  # a Monday, 08:00 in Vilnius
STEP = timedelta(hours=2)
DAYS = 30
SECRET = "month-simulation-secret-0123456789abcdef"
CLOSED = ("Qualified", "Disqualified")
AWAY = (START + timedelta(days=9), START + timedelta(days=16))  # ben's holiday


def forward(form: bytes, owner: str) -> bytes:
    """An owner's forward of a notification that reached their own inbox (Gmail's layout)."""
    original = message_from_bytes(form, policy=default)
    body = original.get_body(("plain",)).get_content()
    return plain_message(f"For us.\n\n---------- Forwarded message ---------\nFrom: {original['From']}\n"
                         f"Date: {original['Date']}\nSubject: {original['Subject']}\nTo: {owner}\n\n{body}",
                         sender=owner, subject=f"Fwd: {original['Subject']}")


def example_config(tmp_path: Path, database_url: str, mailbox, smtp_port: int) -> Path:
    """leadtap.example.toml as shipped, pointed at the test's servers: only
    where it names a server, a password or a file is anything changed."""
    (tmp_path / "commands.secret").write_text(SECRET)
    text = (ROOT / "leadtap.example.toml").read_text()
    for old, new in [
        ('url = "sqlite:////var/lib/leadtap/leadtap.db"', f'url = "{database_url}"'),
        ('host = "imap.example.com"\nport = 993\nsecurity = "tls"\nusername = "sales@example.com"\n'
         'password_file = "${CREDENTIALS_DIRECTORY}/imap-sales"',
         f'host = "{mailbox.server.host}"\nport = {mailbox.server.port}\nsecurity = "plain"\n'
         f'username = "{mailbox.user}"\npassword = "{mailbox.password}"'),
        ('host = "smtp.example.com"\nport = 587\nsecurity = "starttls"\nusername = "crm@example.com"\n'
         'password_file = "${CREDENTIALS_DIRECTORY}/smtp"', f'host = "127.0.0.1"\nport = {smtp_port}\n'
                                                           'security = "plain"'),
        ('secret_file = "${CREDENTIALS_DIRECTORY}/commands"', f'secret_file = "{tmp_path / "commands.secret"}"'),
    ]:
        assert old in text, f"the example config changed: {old!r} is gone"
        text = text.replace(old, new)
    path = tmp_path / "leadtap.toml"
    path.write_text(text)
    assert main(["--config", str(path), "db", "upgrade"]) == 0
    return path


class Month:
    def __init__(self, path: Path, mailbox, smtp: SmtpServer):
        self.app = build_app(str(path))
        self.app.ready_database()
        self.rules = self.app.lead_rules()
        self.mailbox, self.smtp = mailbox, smtp
        self.random = random.Random(20261102)
        self.contacts = 0
        self.outreach_ids: dict[int, str] = {}
        self.seen = {"reminder": 0, "notification": 0, "activity": 0}
        self.refused: list[str] = []
        self.steps = 0

    # --- the world ------------------------------------------------------------------------

    def enquiries(self, now: datetime, count: int) -> None:
        """The web form's notifications; each day's first reached Ana's own inbox, and she forwards it."""
        for index in range(count):
            self.contacts += 1
            n = self.contacts
            form = enquiry(name=f"Person {n}", email=f"p{n}@client{n % 25}.test", company=f"Co {n}",
                           message_id=f"<enquiry-{n}@forms.example.com>")
            self.mailbox.append(forward(form, "Ana <ana@example.com>") if index == 0 else form)
        self.poll(now)

    def poll(self, now: datetime) -> None:
        report = self.app.mailbox_ingest("sales", clock=lambda: now).run()
        assert not report.failed, report

    def people_act(self, now: datetime) -> None:
        """Each open lead's owner, if at work, does what a day brings (seeded)."""
        mail = False
        for lead_id, status, owner in self.open_leads():
            if owner is None or (owner == "ben@example.com" and AWAY[0] <= now < AWAY[1]):
                continue
            if lead_id % 9 == 0:  # left alone: the ladder's to climb
                continue
            roll = self.random.random()
            if status == "New" and roll < 0.45:
                self.outreach(lead_id, owner, now)
                mail = True
            elif status == "Attempting" and roll < 0.35:
                self.answer(lead_id, now)
                mail = True
            elif status in ("Attempting", "Contacted") and roll > 0.9:
                self.send_proposal(lead_id, owner)
                mail = True
            elif status == "Attempting" and roll < 0.5:
                self.act(lambda s, actor: changes.log_contact(s, self.rules, lead_id, "call", "connected", now,
                                                              "spoke", actor, now), owner)
            elif status == "Contacted" and roll < 0.25:
                self.act(lambda s, actor: changes.set_status(s, self.rules, lead_id, "Qualified", actor, now), owner)
            elif status in ("New", "Attempting", "Contacted") and roll > 0.95:
                self.act(lambda s, actor: changes.set_status(s, self.rules, lead_id, "Disqualified", actor, now,
                                                             "No budget"), owner)
        for deal_id, stage, owner in self.open_deals():
            roll = self.random.random()
            if stage == "Discovery" and roll < 0.2:
                self.deal(deal_id, "Proposal", owner, now, values={"amount": "1200"})
            elif stage == "Proposal" and roll > 0.9:
                self.signature_completed(deal_id)
                mail = True
            elif stage == "Proposal" and roll < 0.15:
                self.deal(deal_id, "Won", owner, now, values={"close_date": "2026-12-31"})
            elif stage in ("Discovery", "Proposal") and roll > 0.96:
                self.deal(deal_id, "Lost", owner, now, reason="Price")
        if mail:
            self.poll(now)

    def outreach(self, lead_id: int, owner: str, now: datetime) -> None:
        contact = self.contact_of(lead_id)
        message_id = f"<outreach-{lead_id}-{self.steps}@example.com>"
        self.outreach_ids[lead_id] = message_id
        self.mailbox.append(plain_message("When can we talk?", sender=owner, to=contact, subject="Your enquiry",
                                          message_id=message_id))

    def send_proposal(self, lead_id: int, owner: str) -> None:
        """Outreach with the proposal attached: the example config's move to Proposal (it needs an amount)."""
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = owner, self.contact_of(lead_id), "Our proposal"
        message["Message-ID"] = f"<proposal-{lead_id}-{self.steps}@example.com>"
        message.set_content("Please find our proposal attached.")
        message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="Proposal.pdf")
        self.mailbox.append(bytes(message))

    def signature_completed(self, deal_id: int) -> None:
        """The e-signature service's mail about the contact: the example config's move to Won."""
        with self.app.db.transaction() as session:
            contact = session.scalar(select(Lead.email).join(Opportunity, Opportunity.lead_id == Lead.id)
                                     .where(Opportunity.id == deal_id))
        self.mailbox.append(plain_message("All parties have completed the envelope.",
                                          sender="DocuSign <dse@docusign.net>",
                                          subject="Completed: Please DocuSign: Proposal.pdf", to=contact,
                                          headers={"Cc": "sales@example.com"}))

    def answer(self, lead_id: int, now: datetime) -> None:
        thread = self.outreach_ids.get(lead_id)
        headers = {"In-Reply-To": thread, "References": thread} if thread else {}
        self.mailbox.append(plain_message("Tomorrow at ten.", sender=self.contact_of(lead_id),
                                          subject="Re: Your enquiry", headers=headers))

    def deal(self, deal_id: int, stage: str, owner: str | None, now: datetime, values=None, reason=None) -> None:
        self.act(lambda s, actor: deal_changes.set_stage(s, self.rules, deal_id, stage, actor, now, reason=reason,
                                                         values=values), owner)

    def act(self, apply, owner: str | None) -> None:
        """A person's change; one the rules refuse (no skipping, a required field) changes nothing."""
        try:
            with self.app.db.transaction() as session:
                apply(session, changes.acting(session, owner, self.rules.pipeline))
        except Refused as exc:
            self.refused.append(str(exc))

    def go_away(self, now: datetime) -> None:
        with self.app.db.transaction() as session:
            actor = changes.acting(session, "ben@example.com", self.rules.pipeline, "mail")
            owners.away(session, "ben@example.com", AWAY[1], actor, now)

    # --- the machine ------------------------------------------------------------------------

    def sweep(self, now: datetime) -> None:
        self.app.reminder_sweep(clock=lambda: now).run()
        self.app.step_runner(clock=lambda: now).run()  # the statuses' workflows, then the owners' emails
        self.app.notification_sender(clock=lambda: now).run()
        self.check_what_was_said(now)

    def check_what_was_said(self, now: datetime) -> None:
        """Reminders sent, notices owed and automation's reassignments since
        the last step: never about a closed lead or deal; none to ben away."""
        with self.app.db.transaction() as session:
            reminders = session.execute(
                select(Reminder.id, Reminder.recipient, Lead.id, Lead.status, Task.onboarding_id)
                .join(Lead, Lead.id == Reminder.lead_id).outerjoin(Task, Task.id == Reminder.task_id)
                .where(Reminder.id > self.seen["reminder"], Reminder.state == "sent")).all()
            for row in reminders:
                assert row.status not in CLOSED or row.onboarding_id is not None, (now, row)
                if AWAY[0] <= now < AWAY[1]:
                    assert row.recipient != "ben@example.com", (now, row)
            self.seen["reminder"] = max([self.seen["reminder"], *(r.id for r in reminders)])
            owed = session.execute(
                select(Notification.id, Notification.kind, Lead.status, Opportunity.stage)
                .join(Lead, Lead.id == Notification.lead_id)
                .outerjoin(Opportunity, Opportunity.lead_id == Lead.id)
                .where(Notification.id > self.seen["notification"])).all()
            for row in owed:
                if row.kind == notifications.DEAL_STALE:
                    assert row.stage in ("Discovery", "Proposal", "Negotiation"), (now, row)
                if row.kind == notifications.REASSIGNED:
                    assert row.status not in CLOSED, (now, row)
            self.seen["notification"] = max([self.seen["notification"], *(r.id for r in owed)])
            moved = session.execute(
                select(Activity.id, Activity.kind, Activity.details, Lead.status)
                .join(Lead, Lead.id == Activity.lead_id)
                .where(Activity.id > self.seen["activity"], Activity.kind == "owner")).all()
            for row in moved:
                if row.details.get("by") == "automation":
                    assert row.status not in CLOSED, (now, row)
                    if AWAY[0] <= now < AWAY[1]:
                        assert row.details.get("to") != "ben@example.com", (now, row)
            last = session.scalar(select(func.max(Activity.id)))
            self.seen["activity"] = last or 0

    # --- what the database holds ------------------------------------------------------------

    def open_leads(self) -> list[tuple[int, str, str | None]]:
        with self.app.db.transaction() as session:
            return [tuple(row) for row in session.execute(
                select(Lead.id, Lead.status, Owner.email).outerjoin(Owner, Owner.id == Lead.owner_id)
                .where(Lead.status.not_in(CLOSED)).order_by(Lead.id))]

    def open_deals(self) -> list[tuple[int, str, str | None]]:
        with self.app.db.transaction() as session:
            return [tuple(row) for row in session.execute(
                select(Opportunity.id, Opportunity.stage, Owner.email).join(Lead, Lead.id == Opportunity.lead_id)
                .outerjoin(Owner, Owner.id == Lead.owner_id)
                .where(Opportunity.stage.not_in(("Won", "Lost"))).order_by(Opportunity.id))]

    def contact_of(self, lead_id: int) -> str:
        with self.app.db.transaction() as session:
            return session.scalar(select(Lead.email).where(Lead.id == lead_id))

    def pairs(self) -> list:
        with self.app.db.transaction() as session:
            return session.execute(select(Lead.id, Lead.status, Opportunity.stage)
                                   .outerjoin(Opportunity, Opportunity.lead_id == Lead.id)).all()

    def open_tasks_of_closed_leads(self) -> list:
        with self.app.db.transaction() as session:
            return session.execute(select(Task.id, Task.title, Lead.status).join(Lead, Lead.id == Task.lead_id)
                                   .where(Task.state == "open", Task.onboarding_id.is_(None),
                                          Lead.status.in_(CLOSED))).all()

    def created_by(self, how: str) -> list[str]:
        with self.app.db.transaction() as session:
            return [details.get("owner") for details in session.scalars(
                select(Activity.details).where(Activity.kind == "created")) if details.get("assigned_by") == how]

    def blocked(self) -> list[str]:
        with self.app.db.transaction() as session:
            return list(session.scalars(select(Activity.summary).where(Activity.kind == "blocked")))

    def reassigned(self) -> int:
        with self.app.db.transaction() as session:
            return sum(1 for details in session.scalars(select(Activity.details).where(Activity.kind == "owner"))
                       if details.get("by") == "automation")

    def close(self) -> None:
        self.app.close()


@pytest.mark.dovecot
def test_a_month_with_the_example_config_keeps_every_lead_and_deal_one_story(tmp_path, database_url, mailbox):
    with SmtpServer() as smtp:
        month = Month(example_config(tmp_path, database_url, mailbox, smtp.port), mailbox, smtp)
        try:
            now = START
            while now < START + timedelta(days=DAYS):
                weekday = now.weekday() < 5
                if weekday and now.hour == 6:
                    month.enquiries(now, 3)
                if weekday and now.hour == 10:
                    month.people_act(now)
                if now == AWAY[0]:
                    month.go_away(now)
                month.sweep(now)
                month.steps += 1
                now += STEP
            pairs, stray_tasks = month.pairs(), month.open_tasks_of_closed_leads()
            month_reassigned = month.reassigned()
            forwarded, blocked = month.created_by("forwarded by its owner"), month.blocked()
        finally:
            month.close()

    stages = [stage for _, _, stage in pairs]
    statuses = [status for _, status, _ in pairs]
    assert len(pairs) == 3 * 22  # every enquiry a lead, once
    assert {"Won", "Lost"} <= set(stages) and {"Qualified", "Disqualified", "Attempting"} <= set(statuses)
    for lead_id, status, stage in pairs:
        if stage == "Won":
            assert status == "Qualified", (lead_id, status, stage)
        if stage == "Lost":
            assert status in CLOSED, (lead_id, status, stage)
        if status == "Disqualified":
            assert stage in ("Won", "Lost", None), (lead_id, status, stage)
    assert stray_tasks == []
    acknowledged: dict[str, list[datetime]] = {}
    for message in smtp.messages:
        if message["X-Leadtap"] == "workflow" and message["Auto-Submitted"] == "auto-replied":
            acknowledged.setdefault(message["To"], []).append(parsedate_to_datetime(message["Date"]))
    owners_of_example = {"ana@example.com", "ben@example.com", "sue@example.com", "olga@example.com"}
    assert len(acknowledged) >= 40 and not set(acknowledged) & owners_of_example  # the enquirers, never an owner
    for contact, sent in acknowledged.items():  # once per contact in 30 days
        assert all(b - a >= timedelta(days=30) for a, b in zip(sent, sent[1:])), (contact, sent)
    assert any(m["X-Leadtap"] == "workflow" and m["To"] in owners_of_example for m in smtp.messages)  # a New lead's nudge
    reminded = [m for m in smtp.messages if m["X-Leadtap"] == "reminder"]
    assert reminded and any("[Escalation]" in str(m["Subject"]) for m in reminded)
    assert month_reassigned, "the ladder never reassigned a lead: the stream does not exercise it"
    assert len(forwarded) == 22 and set(forwarded) <= {"ana@example.com"}  # Ana's forwards are hers
    assert any("deal not moved to" in said for said in blocked)  # the proposal mailed, its amount not yet set
