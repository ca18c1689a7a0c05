"""The reminder sweep: find the reminders due, claim them, send them.

1. Outside the configured business hours the sweep does nothing: the
   reminders wait for the next sweep inside them.
2. The due reminders are claimed (a unique insert per lead, rule, stay and
   number) in one committed transaction: only what this sweep claimed is sent.
3. Letters are rendered and sent over one SMTP connection: one per reminder
   and recipient, or one digest per recipient.
4. A reminder delivered to anyone is marked sent; one whose every send failed
   for a reason that may pass is released for a later sweep; one refused
   for good by every recipient is marked sent with the error, never retried.

Delivery is at-least-once: a crash after a send and before step 4's commit
leaves the claim unconfirmed, and it is sent again once its lease has run out
(``core.store.outbox.CLAIM_LEASE``).
"""

from __future__ import annotations

import copy
import time
import uuid
from contextlib import AbstractContextManager
from email.message import Message
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from leadtap.core.use_cases import changes
from leadtap.core.use_cases.changes import LeadRules
from leadtap.core.config.load import Config
from leadtap.core.store.db import Owner, Reminder
from leadtap.core.store.engine import Database, Rehearsal, describe_db_error, utcnow
from leadtap.core.rules.lifecycle import OwnerChanged, Refused
from leadtap.core.rules.model import is_away
from leadtap.core.store.outbox import remember_digest, send_until
from leadtap.core.store.reminders import (
    NOBODY,
    REASSIGN,
    ClaimKey,
    Due,
    claim,
    fail,
    find_due,
    key_clause,
    mark_sent,
    owners_with_role,
    release,
)
from leadtap.core.use_cases.listing import lead_dict
from leadtap.core.use_cases.views import open_task_list
from leadtap.core.logs import get_logger
from leadtap.scheduler.outbox import send_one
from leadtap.scheduler.deals import DealReport, DealSweep
from leadtap.scheduler.mailer import SmtpMailer
from leadtap.scheduler.render import Renderer, ReplyHeaders, compose, describe_duration

# Sent reminders are confirmed in groups: fewer commits, and a crash re-sends
# at most this many (at-least-once).
CONFIRM_EVERY = 50

MailerFactory = Callable[[], AbstractContextManager[SmtpMailer]]


@dataclass
class Letter:
    """One email to one recipient about one or more reminders."""

    recipient: Owner
    items: list[tuple[Due, bool]]  # (reminder, is an escalation for this recipient)


@dataclass
class SweepReport:
    due: int = 0
    sent: int = 0
    released: int = 0
    refused: int = 0
    reassigned: int = 0
    skipped: str | None = None
    waits_until: datetime | None = None  # outside business hours: when they open
    plan: list[str] = field(default_factory=list)  # what the sweep set out to do, in words (a dry run prints it)
    deals: DealReport = field(default_factory=DealReport)

    def summary(self, dry_run: bool = False) -> str:
        if self.skipped:
            return f"reminders: {self.skipped}"
        summary = f"reminders: {self.due} due"
        summary += "" if dry_run else f", {self.sent} sent, {self.released} to retry, {self.refused} refused"
        summary += f", {self.reassigned} reassigned" if self.reassigned else ""
        return summary + (f"; {self.deals.summary()}" if self.deals.anything else "")

    @property
    def owes_mail(self) -> bool:
        """Owners were owed emails by this sweep: the outbox should send now."""
        return bool(self.reassigned or self.deals.warned or self.deals.closed)


def rung_handed_on(session, key: ClaimKey) -> bool:
    """The rung's reassignment is another sweep's: in flight, or done — then
    that sweep tells the old owner. One refused (no one else to take the
    lead) or moot leaves the owner's reminder to be sent, or sent again."""
    row = session.execute(select(Reminder.state, Reminder.last_error).where(*key_clause(key))).one_or_none()
    return row is not None and (row.state == "claimed" or row.last_error is None)


class ReminderSweep:
    def __init__(
        self,
        config: Config,
        db: Database,
        renderer: Renderer,
        mailer: MailerFactory,
        rules: LeadRules,
        clock: Callable[[], datetime] = utcnow,
        should_stop: Callable[[], bool] = lambda: False,
        reply_headers: ReplyHeaders | None = None,
    ):
        self.config, self.db, self.renderer, self.mailer = config, db, renderer, mailer
        self.reply_headers = reply_headers
        self.rules = rules
        self.clock, self.should_stop = clock, should_stop
        self.log = get_logger("leadtap.reminders")

    def run(self, dry_run: bool = False) -> SweepReport:
        """One sweep; a dry run goes through the same steps on a rehearsal of
        the database (``Database.rehearsal``), sends nothing and keeps nothing,
        and says what the sweep would do — outside business hours, what waits."""
        now = self.clock()
        report = SweepReport()
        settings = self.config.reminders
        local = now.astimezone(settings.zone)
        if settings.business_hours and not settings.business_hours.contains(local):
            report.waits_until = settings.business_hours.next_opening(local)
            if not dry_run:
                report.skipped = "outside business hours; the reminders wait"
                return report
        if not dry_run:
            return self.sweep(now, report)
        with self.db.rehearsal() as rehearsal:
            return self.rehearsed(rehearsal).sweep(now, report, dry_run=True)

    def rehearsed(self, rehearsal: Rehearsal) -> ReminderSweep:
        sweep = copy.copy(self)
        sweep.db, sweep.log = rehearsal, self.log.bind(dry_run=True)  # what it logs, it did not do
        return sweep

    def sweep(self, now: datetime, report: SweepReport, dry_run: bool = False) -> SweepReport:
        settings = self.config.reminders
        # the staleness policy first: a deal it closes may move its lead
        report.deals = DealSweep(self.db, self.rules, self.should_stop, dry_run).run(now)
        report.plan += report.deals.done
        with self.db.transaction() as session:
            found = find_due(session, settings.rules, self.config.closed, now)
            due, taken = self.while_away(found.due, now), found.taken
            supervisors = {r.escalate_to_role: owners_with_role(session, r.escalate_to_role, now)
                           for r in settings.rules if r.escalate_to_role}
        self.reassign_all(due, now, report)
        letters = self.letters(due, supervisors, taken)
        self.record_unreachable(due, supervisors, taken, now, report)
        report.due = sum(len(letter.items) for letter in letters)
        report.plan += [f"send to {self.describe(letter)}" for letter in letters]
        if letters and not dry_run:
            self.deliver(letters, now, report)
        return report

    def while_away(self, due: list[Due], now: datetime) -> list[Due]:
        """An away owner's reminders go to the escalation role as if they had
        no owner, or (``while_away = "wait"``) wait until they are back."""
        for d in due:
            d.owner_away = d.owner is not None and is_away(d.owner, now)
        if self.config.reminders.while_away == "wait":
            return [d for d in due if not d.owner_away]
        return due

    # --- the ladder's last rung: reassignment -----------------------------------

    def reassign_all(self, due: list[Due], now: datetime, report: "SweepReport") -> None:
        """At the ``reassign_after``-th reminder of a stay the lead goes to the
        rotation's next owner. The old owner is owed the ``reassigned`` notice
        and the new one the new-lead email (the outbox: a failed send is tried
        again); the escalation role's reminder says where it went; the new
        stay counts from zero. One lead's failure never stops the sweep."""
        for d in due:
            rule = d.rule
            if rule.reassign_after is None or d.task is not None or d.number + 1 < rule.reassign_after:
                continue
            try:
                d.owner_skipped, d.reassigned_to = self.reassign(d, now)
            except DBAPIError as exc:  # a deadlock's victim, a lost connection: the next sweep tries again
                self.log.warning("reassignment_failed", lead_id=d.lead.id, rule=rule.name,
                                 error=describe_db_error(exc))
                continue
            if d.reassigned_to is not None:
                report.reassigned += 1
                report.plan.append(f"reassign lead #{d.lead.id} ({rule.name}, reminder {d.number + 1}) "
                                   f"from {d.owner.email if d.owner else 'nobody'} to {d.reassigned_to.email}")

    def reassign(self, due: Due, now: datetime) -> tuple[bool, Owner | None]:
        """Once per (lead, rule, stay, number), under two sweeps at once: the
        claim (recipient ``REASSIGN``), the reassignment and its confirmation
        are one transaction, so only the sweep whose claim commits reassigns.
        Returns whether the old owner's reminder is left out (the rung was
        taken, here or by another sweep) and the new owner, if this sweep
        gave the lead."""
        key, token = due.for_recipient(REASSIGN), uuid.uuid4().hex
        with self.db.transaction() as session:
            if not claim(session, key, token, now):
                return rung_handed_on(session, key), None
            try:
                with session.begin_nested():
                    change = changes.reassign_stale(session, self.rules, due.lead.id, due.rule.status, due.stay, now)
            except Refused as exc:  # no other active owner holds the role: the reminders go on
                self.log.warning("reassignment_refused", lead_id=due.lead.id, rule=due.rule.name, reason=str(exc))
                mark_sent(session, [(key, str(exc))], token, now)
                return False, None
            mark_sent(session, [(key, None if change else "the lead moved on")], token, now)
            if change is None:
                return False, None
            new = change.of(OwnerChanged)[0].new
            owner = session.scalars(select(Owner).where(Owner.email == new)).one()
        self.log.info("lead_reassigned", lead_id=due.lead.id, rule=due.rule.name, number=due.number + 1,
                      to=owner.email)
        return True, owner

    # --- who gets what --------------------------------------------------------

    def letters(self, due: list[Due], supervisors: dict[str, list[Owner]], taken: set) -> list[Letter]:
        """Who gets what: per reminder its recipients, less those it was already
        sent (or is being sent) to; one letter each, or one digest per recipient."""
        per_due = [[(o, esc) for o, esc in self.recipients(d, supervisors) if d.for_recipient(o.email) not in taken]
                   for d in due]
        if not self.config.reminders.digest:
            return [Letter(owner, [(d, escalation)]) for d, people in zip(due, per_due) for owner, escalation in people]
        digests: dict[int, Letter] = {}
        for d, people in zip(due, per_due):
            for owner, escalation in people:
                digests.setdefault(owner.id, Letter(owner, [])).items.append((d, escalation))
        return list(digests.values())

    def recipients(self, due: Due, supervisors: dict[str, list[Owner]]) -> list[tuple[Owner, bool]]:
        """The active owner; and the escalation role from the ``escalate_after``-th
        reminder on, or at once when there is no active owner to remind."""
        people: list[tuple[Owner, bool]] = []
        owner = due.owner if due.owner is not None and due.owner.active and not due.owner_away else None
        if owner is not None and not due.owner_skipped:
            people.append((owner, False))
        if due.rule.escalate_to_role and (owner is None or due.number + 1 >= (due.rule.escalate_after or 1)):
            people += [(s, True) for s in supervisors.get(due.rule.escalate_to_role, []) if s is not owner]
        return people

    def record_unreachable(self, due: list[Due], supervisors: dict[str, list[Owner]], taken: set,
                           now: datetime, report: SweepReport) -> None:
        """A rung nobody can be sent — no active owner, no one in the
        escalation role — of a rule that reassigns is logged once and recorded
        as gone out (recipient ``NOBODY``), so that the ladder still climbs to
        its reassignment; another rule's stays where it is."""
        nobody = [d for d in due if d.rule.reassign_after is not None and d.task is None and not d.owner_skipped
                  and not self.recipients(d, supervisors) and d.for_recipient(NOBODY) not in taken]
        if not nobody:
            return
        token, error = uuid.uuid4().hex, "no active owner and no one in the escalation role to remind"
        with self.db.transaction() as session:
            for d in nobody:
                key = d.for_recipient(NOBODY)
                if claim(session, key, token, now):
                    mark_sent(session, [(key, error)], token, now)
                    self.log.warning("reminder_without_recipient", lead_id=d.lead.id, rule=d.rule.name,
                                     number=d.number + 1)
                    report.plan.append(f"record lead #{d.lead.id} ({d.rule.name}, reminder {d.number + 1}): {error}")

    def describe(self, letter: Letter) -> str:
        items = ", ".join(f"lead #{d.lead.id} ({d.rule.name}, reminder {d.number + 1}"
                          f"{', escalation' if esc else ''})" for d, esc in letter.items)
        return f"{letter.recipient.email}: {items}"

    # --- claim, send, confirm -------------------------------------------------

    def deliver(self, letters: list[Letter], now: datetime, report: SweepReport) -> None:
        """Claim every letter's reminders, then send; confirm in groups; on the
        way out (done, stopped, out of time or an error) release what is left."""
        token = uuid.uuid4().hex
        claimed = self.claim_all(letters, token, now)
        deadline = send_until()
        done: list[tuple[ClaimKey, str | None]] = []
        try:
            with self.mailer() as mailer:
                for letter in letters:
                    keys = [d.for_recipient(letter.recipient.email) for d, _ in letter.items]
                    items = [(d, esc) for (d, esc), key in zip(letter.items, keys) if key in claimed]
                    if not items:
                        continue
                    if self.should_stop() or time.monotonic() > deadline:
                        break
                    error = self.send(mailer, letter.recipient, items, now)
                    mine = [d.for_recipient(letter.recipient.email) for d, _ in items]
                    claimed.difference_update(mine)
                    if error is None or error.permanent:
                        done += [(key, str(error) if error else None) for key in mine]
                        report.sent += len(mine) if error is None else 0
                        report.refused += len(mine) if error is not None else 0
                    elif error.sweep_wide:  # the server or our login: no use trying the others now
                        self.release(mine, token, report)
                        break
                    else:  # this recipient's server, for now: tried again, and the ladder goes on
                        self.fail(mine, str(error), token, now, report)
                    if len(done) >= CONFIRM_EVERY:
                        self.confirm(done, token, now)
                        done = []
        finally:
            self.confirm(done, token, now)
            self.release(sorted(claimed), token, report)

    def claim_all(self, letters: list[Letter], token: str, now: datetime) -> set[ClaimKey]:
        keys = sorted({d.for_recipient(letter.recipient.email) for letter in letters for d, _ in letter.items})
        with self.db.transaction() as session:  # in key order: two workers never deadlock here
            return {key for key in keys if claim(session, key, token, now)}

    def confirm(self, done: list[tuple[ClaimKey, str | None]], token: str, now: datetime) -> None:
        """Mark sent (or refused for good) what this sweep still holds."""
        if done:
            with self.db.transaction() as session:
                mark_sent(session, done, token, now)

    def fail(self, keys: list[ClaimKey], error: str, token: str, now: datetime, report: SweepReport) -> None:
        with self.db.transaction() as session:
            fail(session, keys, error, token, now)
        report.released += len(keys)

    def release(self, keys: list[ClaimKey], token: str, report: SweepReport) -> None:
        if keys:
            with self.db.transaction() as session:
                release(session, keys, token)
            report.released += len(keys)

    def send(self, mailer: SmtpMailer, recipient: Owner, items: list[tuple[Due, bool]], now: datetime):
        """One letter; returns None when sent, else the error (never raises: one
        bad letter must not end the sweep)."""
        lead_ids = [d.lead.id for d, _ in items]
        return send_one(mailer, self.log, "reminder", lambda: self.letter(recipient, items, now),
                        recipient=recipient.email, lead_ids=lead_ids, rules=sorted({d.rule.name for d, _ in items}))

    def letter(self, recipient: Owner, items: list[tuple[Due, bool]], now: datetime) -> Message:
        """The email: one reminder, or a digest; with ``[commands]``, a token a reply can act under."""
        kind = "digest" if self.config.reminders.digest else items[0][0].rule.template
        rendered = self.renderer.render(kind, self.context(recipient, items, now))
        email = compose(rendered, self.config.smtp.sender, [recipient.email], now, "reminder")
        if self.reply_headers:  # a digest's reply names each lead; a single reminder's is about its lead
            lead_ids = [d.lead.id for d, _ in items]
            self.reply_headers.apply(email, recipient.email, now, None if kind == "digest" else lead_ids[0])
            if kind == "digest":
                self.remember_digest(email["Message-ID"], recipient.email, lead_ids, now)
        return email

    def remember_digest(self, message_id: str, recipient: str, lead_ids: list[int], now: datetime) -> None:
        """The leads a digest lists, under its token, before it is sent: a
        reply to it acts on those only. Digests too old to answer go."""
        with self.db.transaction() as session:
            remember_digest(session, message_id, recipient, lead_ids, now, self.reply_headers.digest_max_age)

    def context(self, recipient: Owner, items: list[tuple[Due, bool]], now: datetime) -> dict:
        rows = [self.item(d, escalation) for d, escalation in items]
        if self.reply_headers is not None:
            self.number_tasks(rows)
        first = rows[0]
        return {**first, "recipient": {"email": recipient.email, "name": recipient.name}, "items": rows,
                "now": now.isoformat(), "commands": self.reply_headers is not None}

    def number_tasks(self, rows: list[dict]) -> None:
        """Each task's number as ``/done N`` takes it (its lead's open tasks, soonest due first)."""
        if not any(row["task"] for row in rows):
            return
        with self.db.transaction() as session:
            numbers = {task["id"]: task["number"] for lead_id in {row["lead"]["id"] for row in rows if row["task"]}
                       for task in open_task_list(session, lead_id)}
        for row in rows:
            if row["task"]:
                row["task"]["number"] = numbers.get(row["task"]["id"])

    def item(self, due: Due, escalation: bool) -> dict:
        owner, task, new = due.owner, due.task, due.reassigned_to
        return {
            "lead": lead_dict(due.lead, owner, None),
            "owner": {"email": owner.email, "name": owner.name} if owner else None,
            "rule": {"name": due.rule.name, "status": due.rule.status, "after": describe_duration(due.rule.after)},
            "stale_for": describe_duration(due.stale_for),
            "number": due.number + 1,
            "escalation": escalation,
            "lead_url": self.config.reminders.link(due.lead.id),
            "task": {"id": task.id, "title": task.title, "due_at": task.due_at.isoformat(), "number": None}
            if task else None,
            "reassigned_to": {"email": new.email, "name": new.name} if new else None,
        }
