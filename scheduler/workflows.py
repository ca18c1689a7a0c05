"""Running the statuses' workflows (``core.use_cases.workflows``): each step
due is claimed (one worker wins it), read again with its lead, and run — a
task, an assignment or fields set in one transaction; an email sent after
its recipients are read, then recorded as notifications are:

- a lead that moved on (or a config that no longer has the step): dropped,
  with the reason, never run;
- a step refused (nobody to write to, the contact already had this email in
  its period, an assignment with no one to take it): dropped, with why;
- a 5xx refusal: failed, never retried; a failure that may pass: pending
  again after a backoff, given up after ``[notifications] max_attempts``;
- our SMTP server or login failing: released, no attempt counted.

The email to the contact is the acknowledgement of an enquiry: it answers
it (``In-Reply-To``), says it is automatic (``Auto-Submitted:
auto-replied``, so the contact's auto-responder stays quiet), comes from
``[smtp] from`` or the owner, and its Message-ID is the lead's, so the
contact's answer joins the lead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from email.utils import formataddr, make_msgid, parseaddr
from typing import Callable

from sqlalchemy import select

from leadtap.core.config.load import Config
from leadtap.core.logs import get_logger
from leadtap.core.rules.lifecycle import Refused
from leadtap.core.rules.workflows import OWNER, reply_subject
from leadtap.core.store.engine import Database, utcnow
from leadtap.core.store.outbox import send_until
from leadtap.core.store.services import lock_rotation
from leadtap.core.store.db import Owner
from leadtap.core.use_cases import workflows
from leadtap.core.use_cases.deal_views import deal_row
from leadtap.core.use_cases.listing import lead_dict
from leadtap.core.use_cases.views import open_task_list
from leadtap.core.use_cases.workflows import OUTBOX, Letter
from leadtap.scheduler.outbox import claim_due, send_each, send_one
from leadtap.scheduler.render import Renderer, ReplyHeaders, compose

BATCH = 200


@dataclass
class StepReport:
    done: int = 0  # tasks made, leads assigned, fields set
    sent: int = 0
    retry: int = 0
    failed: int = 0
    dropped: int = 0

    def summary(self) -> str:
        return (f"workflow steps: {self.done} done, {self.sent} emails sent, {self.retry} to retry, "
                f"{self.failed} refused, {self.dropped} dropped")

    @property
    def anything(self) -> bool:
        return bool(self.done or self.sent or self.retry or self.failed or self.dropped)


@dataclass
class Outgoing:
    """A step's email, ready: its letter, the template's context, its Message-ID (made before the send for the contact's)."""

    letter: Letter
    context: dict
    message_id: str | None = None


class StepRunner:
    def __init__(self, config: Config, db: Database, renderer: Renderer, mailer, rules,
                 clock: Callable[[], datetime] = utcnow, should_stop: Callable[[], bool] = lambda: False,
                 reply_headers: ReplyHeaders | None = None):
        self.config, self.db, self.renderer, self.mailer, self.rules = config, db, renderer, mailer, rules
        self.clock, self.should_stop, self.reply_headers = clock, should_stop, reply_headers
        self.log = get_logger("leadtap.workflows")
        smtp, commands = config.smtp, config.commands
        self.own = {a.lower() for a in (parseaddr(smtp.sender)[1] if smtp else None,
                                        commands.address if commands.enabled else None) if a}

    def run(self) -> StepReport:
        report = StepReport()
        now = self.clock()
        token = uuid.uuid4().hex
        mine = claim_due(self.db, OUTBOX, now, token, BATCH)
        deadline = send_until()  # from the claim: a slow settling never sends past the claims' lease
        outgoing: list[Outgoing] = []
        for row_id in mine:
            if self.should_stop():
                self.release([row_id], token)
                continue
            ready = self.settle_one(row_id, token, now, report)
            if ready is not None:
                outgoing.append(ready)
        if outgoing:
            self.deliver(outgoing, token, now, report, deadline)
        return report

    def settle_one(self, row_id: int, token: str, now: datetime, report: StepReport) -> Outgoing | None:
        """``settle``; a step that fails on a bug (or its data) is retried later, alone: the rest go on."""
        try:
            return self.settle(row_id, token, now, report)
        except Exception as exc:
            self.log.exception("workflow_step_failed", row=row_id)
            with self.db.transaction() as session:
                state = OUTBOX.retry_later(session, row_id, token, now, f"{type(exc).__name__}: {exc}",
                                           self.config.notifications.max_attempts)
                if state == "failed":
                    workflows.give_back(session, row_id)
            report.retry += state == "pending"
            report.failed += state == "failed"
            return None

    def settle(self, row_id: int, token: str, now: datetime, report: StepReport) -> Outgoing | None:
        """Run a step that needs no mail; for an email, what to send (read in the same transaction)."""
        rules, letter, outgoing = self.rules, None, None
        with self.db.transaction() as session:
            row = session.get(workflows.WorkflowStep, row_id)
            step = workflows.step_of(row, rules, session.get(workflows.Lead, row.lead_id))  # read: a lead keeps its pipeline
            if step is not None and step.kind == "assign":
                lock_rotation(session, step.role)  # the rotation's lock before the lead's, as every assignment
            lead = workflows.locked_lead(session, row.lead_id)
            step = workflows.step_of(row, rules, lead) if lead is not None else step
            why, keep_claim = workflows.why_not(session, row, lead, rules, now), False
            if why is None:
                try:
                    with session.begin_nested():  # a refused step leaves nothing behind
                        if step.sends:
                            letter = workflows.letter(session, row, step, lead, now, self.own)
                            outgoing = self.prepare(session, letter)
                        else:
                            workflows.run_in_database(session, self.rules, row, step, lead, now)
                except Refused as exc:
                    why, keep_claim = str(exc), isinstance(exc, workflows.MaybeSent)
            if why is not None:
                OUTBOX.finish(session, row_id, token, now, "dropped", why)
                if not keep_claim:  # never sent: the contact's period is free again
                    workflows.give_back(session, row_id)
            elif letter is None:
                OUTBOX.finish(session, row_id, token, now, "done")
        about = {"lead_id": row.lead_id, "status": row.status, "step": row.step + 1, "kind": row.kind}
        if why is not None:
            report.dropped += 1
            self.log.info("workflow_step_dropped", why=why, **about)
        elif letter is None:
            report.done += 1
            self.log.info("workflow_step_done", **about)
        return outgoing

    def prepare(self, session, letter: Letter) -> Outgoing:
        """The email's context; for the contact's, its Message-ID made and made
        the lead's now — before the send, so an answer, however quick, joins the lead."""
        lead, owner, deal = letter.lead, letter.owner, letter.deal
        first = letter.recipients[0]
        name = lead.name if letter.step.to_contact else session.scalar(select(Owner.name).where(Owner.email == first))
        context = {
            "lead": lead_dict(lead, owner, deal),
            "owner": {"email": owner.email, "name": owner.name} if owner else None,
            "deal": deal_row(deal, lead, owner, self.config.opportunities.deals) if deal else None,
            "tasks": open_task_list(session, lead.id),
            "lead_url": self.config.reminders.link(lead.id),
            "reply_subject": reply_subject(lead.subject) if letter.answers else "",  # what the contact wrote, answered
            "by_mail": letter.by_mail,  # else entered by hand (a call, a card)
            "recipient": {"email": first, "name": name},
            "commands": self.reply_headers is not None and not letter.step.to_contact,
        }
        message_id = None
        if letter.step.to_contact:
            domain = parseaddr(self.config.smtp.sender)[1].rpartition("@")[2] if self.config.smtp else ""
            message_id = make_msgid(idstring="leadtap", domain=domain or "leadtap.invalid")
            workflows.remember_sent(session, letter.row_id, lead.id, message_id, letter.recipients, True)
        return Outgoing(letter, context, message_id)

    def deliver(self, letters: list[Outgoing], token: str, now: datetime, report: StepReport,
                deadline: float) -> None:
        if self.config.smtp is None:  # `check` refuses a sending workflow without [smtp]; the config changed
            for letter in letters:
                self.record(letter, token, now, "dropped", "no [smtp] table in the config")
                report.dropped += 1
            return
        send_each(self.mailer, letters, lambda mailer, outgoing: self.send(mailer, outgoing, token, now, report),
                  self.should_stop, lambda left: self.release([o.letter.row_id for o in left], token), deadline)

    def send(self, mailer, outgoing: Outgoing, token: str, now: datetime, report: StepReport) -> bool:
        """Send one step's email and record the answer; False when the rest should wait."""
        letter = outgoing.letter
        error = send_one(mailer, self.log, "workflow_email", lambda: self.email(outgoing, now), lead_id=letter.lead.id,
                         recipient=", ".join(letter.recipients), template=letter.step.template)
        if error is None:
            self.record(outgoing, token, now, "sent")
            report.sent += 1
        elif error.permanent or (error.timed_out and letter.step.to_contact):
            # a contact's email cut off mid-send may have gone out: never sent twice
            said = f"{error}; it may have gone out, so it is not sent again" if not error.permanent else str(error)
            self.record(outgoing, token, now, "failed", said, keep_claim=not error.permanent)
            report.failed += 1
        elif error.sweep_wide and not error.timed_out:
            self.release([letter.row_id], token)
            return False
        else:
            with self.db.transaction() as session:
                state = OUTBOX.retry_later(session, letter.row_id, token, now, str(error),
                                           self.config.notifications.max_attempts)
                if state == "failed":
                    workflows.give_back(session, letter.row_id)
            report.retry += state == "pending"
            report.failed += state == "failed"
            return not error.sweep_wide
        return True

    def email(self, outgoing: Outgoing, now: datetime) -> Message:
        letter = outgoing.letter
        step, lead, owner = letter.step, letter.lead, letter.owner
        rendered = self.renderer.render(step.template, outgoing.context)
        sender = formataddr((owner.name, owner.email)) if step.sender == OWNER and owner else self.config.smtp.sender
        email = compose(rendered, sender, list(letter.recipients), now, "workflow")
        if step.to_contact:
            email.replace_header("Message-ID", outgoing.message_id)
            email.replace_header("Auto-Submitted", "auto-replied")
            reply_to = (owner.email if owner else None) if step.reply_to == OWNER else step.reply_to
            if reply_to:
                email["Reply-To"] = reply_to
            if letter.answers:
                email["In-Reply-To"] = email["References"] = letter.answers
        elif self.reply_headers is not None and "@" not in step.to and len(letter.recipients) == 1:
            self.reply_headers.apply(email, letter.recipients[0], now, lead.id)  # the owner may act by replying
        outgoing.message_id = email["Message-ID"]
        return email

    def record(self, outgoing: Outgoing, token: str, now: datetime, state: str, error: str | None = None,
               keep_claim: bool = False) -> None:
        letter = outgoing.letter
        with self.db.transaction() as session:
            if state == "sent" and not letter.step.to_contact:
                workflows.remember_sent(session, letter.row_id, letter.lead.id, outgoing.message_id,
                                        letter.recipients, False)
            OUTBOX.finish(session, letter.row_id, token, now, state, error)
            if state != "sent" and not keep_claim:
                workflows.give_back(session, letter.row_id)

    def release(self, ids: list[int], token: str) -> None:
        """Untried: no attempt is in flight, so no Message-ID was used (``letter`` reads it as a cut-off send)."""
        if ids:
            with self.db.transaction() as session:
                OUTBOX.release(session, ids, token, message_id=None)

