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
(``core.reminders.CLAIM_LEASE``).
"""

from __future__ import annotations

from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

import structlog

from core.config import Config
from core.db import Database, Owner, utcnow
from core.errors import MailSendError
from core.reminders import Due, claim, find_due, mark_sent, owners_with_role, release
from core.views import lead_dict
from scheduler.mailer import SmtpMailer
from scheduler.render import RenderError, Renderer, compose, describe_duration

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
    skipped: str | None = None
    plan: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.skipped:
            return f"reminders: {self.skipped}"
        return f"reminders: {self.due} due, {self.sent} sent, {self.released} to retry, {self.refused} refused"


class ReminderSweep:
    def __init__(
        self,
        config: Config,
        db: Database,
        renderer: Renderer,
        mailer: MailerFactory,
        clock: Callable[[], datetime] = utcnow,
        should_stop: Callable[[], bool] = lambda: False,
    ):
        self.config, self.db, self.renderer, self.mailer = config, db, renderer, mailer
        self.clock, self.should_stop = clock, should_stop
        self.log = structlog.get_logger("leadtap.reminders")

    def run(self, dry_run: bool = False) -> SweepReport:
        now = self.clock()
        report = SweepReport()
        settings = self.config.reminders
        if settings.business_hours and not settings.business_hours.contains(now.astimezone(settings.zone)):
            report.skipped = "outside business hours; the reminders wait"
            return report
        with self.db.transaction() as session:
            due = find_due(session, settings.rules, self.config.leads.closed_statuses, now)
            supervisors = {r.escalate_to_role: owners_with_role(session, r.escalate_to_role)
                           for r in settings.rules if r.escalate_to_role}
        letters = self.letters(due, supervisors)
        report.due = len({d.key for letter in letters for d, _ in letter.items})
        if dry_run:
            report.plan = [self.describe(letter) for letter in letters]
            return report
        if letters:
            self.deliver(letters, now, report)
        return report

    # --- who gets what --------------------------------------------------------

    def letters(self, due: list[Due], supervisors: dict[str, list[Owner]]) -> list[Letter]:
        per_due: list[list[tuple[Owner, bool]]] = [self.recipients(d, supervisors) for d in due]
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
        owner = due.owner if due.owner is not None and due.owner.active else None
        if owner is not None:
            people.append((owner, False))
        if due.rule.escalate_to_role and (owner is None or due.number + 1 >= (due.rule.escalate_after or 1)):
            people += [(s, True) for s in supervisors.get(due.rule.escalate_to_role, []) if s is not owner]
        if not people:
            self.log.warning("reminder_without_recipient", lead_id=due.lead.id, rule=due.rule.name)
        return people

    def describe(self, letter: Letter) -> str:
        items = ", ".join(f"lead #{d.lead.id} ({d.rule.name}, reminder {d.number + 1}"
                          f"{', escalation' if esc else ''})" for d, esc in letter.items)
        return f"{letter.recipient.email}: {items}"

    # --- claim, send, confirm -------------------------------------------------

    def deliver(self, letters: list[Letter], now: datetime, report: SweepReport) -> None:
        claimed = self.claim_all(letters, now)
        outcome: dict[tuple, list[MailSendError | None]] = {key: [] for key in claimed}
        remaining = Counter(d.key for letter in letters for d, _ in letter.items if d.key in claimed)
        finished: dict[tuple, list[MailSendError | None]] = {}
        with self.mailer() as mailer:
            for letter in letters:
                items = [(d, esc) for d, esc in letter.items if d.key in claimed]
                if not items:
                    continue
                if self.should_stop():
                    break
                error = self.send(mailer, letter.recipient, items, now)
                for d, _ in items:
                    outcome[d.key].append(error)
                    remaining[d.key] -= 1
                    if remaining[d.key] == 0:
                        finished[d.key] = outcome.pop(d.key)
                if len(finished) >= CONFIRM_EVERY:
                    self.confirm(claimed, finished, now, report)
                    finished = {}
        self.confirm(claimed, finished, now, report)
        # Stopped early: what was claimed and not sent is released for the next sweep.
        self.confirm(claimed, outcome, now, report)

    def claim_all(self, letters: list[Letter], now: datetime) -> dict[tuple, Due]:
        dues = {d.key: d for letter in letters for d, _ in letter.items}
        recipients: dict[tuple, list[str]] = {}
        for letter in letters:
            for d, _ in letter.items:
                recipients.setdefault(d.key, []).append(letter.recipient.email)
        claimed = {}
        with self.db.transaction() as session:
            for key, d in dues.items():
                if claim(session, d, recipients[key], now):
                    claimed[key] = d
        return claimed

    def send(self, mailer: SmtpMailer, recipient: Owner, items: list[tuple[Due, bool]], now: datetime):
        kind = "digest" if self.config.reminders.digest else items[0][0].rule.template
        context = self.context(recipient, items, now)
        try:
            rendered = self.renderer.render(kind, context)
        except RenderError as exc:  # a template broken since `leadtap check`: retried after a fix
            self.log.error("reminder_not_rendered", recipient=recipient.email, error=str(exc),
                           lead_ids=[d.lead.id for d, _ in items])
            return MailSendError(f"template: {exc}", permanent=False)
        try:
            mailer.send(compose(rendered, self.config.smtp.sender, [recipient.email], now, "reminder"))
        except MailSendError as error:
            self.log.error("reminder_failed", recipient=recipient.email, error=str(error), permanent=error.permanent,
                           lead_ids=[d.lead.id for d, _ in items])
            return error
        self.log.info("reminder_sent", recipient=recipient.email, lead_ids=[d.lead.id for d, _ in items],
                      rules=sorted({d.rule.name for d, _ in items}))
        return None

    def confirm(self, claimed: dict, outcome: dict[tuple, list], now: datetime, report: SweepReport) -> None:
        """Mark sent what reached anyone (or was refused for good by everyone);
        release the rest for a later sweep."""
        if not outcome:
            return
        sent: list[tuple[Due, str | None]] = []
        with self.db.transaction() as session:
            for key, errors in outcome.items():
                if any(e is None for e in errors):
                    sent.append((claimed[key], None))
                    report.sent += 1
                elif errors and all(e.permanent for e in errors):
                    sent.append((claimed[key], "; ".join(str(e) for e in errors)))
                    report.refused += 1
                else:
                    release(session, claimed[key])
                    report.released += 1
            mark_sent(session, sent, now)

    def context(self, recipient: Owner, items: list[tuple[Due, bool]], now: datetime) -> dict:
        rows = [self.item(d, escalation) for d, escalation in items]
        first = rows[0]
        return {**first, "recipient": {"email": recipient.email, "name": recipient.name}, "items": rows,
                "now": now.isoformat()}

    def item(self, due: Due, escalation: bool) -> dict:
        url = self.config.reminders.lead_url
        owner = due.owner
        return {
            "lead": lead_dict(due.lead, owner, None),
            "owner": {"email": owner.email, "name": owner.name} if owner else None,
            "rule": {"name": due.rule.name, "status": due.rule.status, "after": describe_duration(due.rule.after)},
            "stale_for": describe_duration(due.stale_for),
            "number": due.number + 1,
            "escalation": escalation,
            "lead_url": url.replace("{id}", str(due.lead.id)) if url else None,
        }
