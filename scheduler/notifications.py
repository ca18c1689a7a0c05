"""Sending the emails owed to owners (``core.store.notifications``): claim each,
read it again just before its send, send it, record the answer. Run by
``leadtap run`` every ``[notifications].send_every`` and after each poll, and
by the commands that make a lead someone's, after their transaction commits.

- sent: never again;
- a 5xx refusal: failed, with the answer, never retried;
- a failure that may pass (4xx, a timeout, a template broken since
  ``check``): pending again after a backoff, given up after
  ``max_attempts``;
- the server or our login failing: everything not yet tried is released
  with no attempt counted — an outage loses nothing;
- a lead that is no longer the recipient's (for ``new_lead``), or a
  recipient no longer active: dropped, not sent.

The templates: ``[notifications].new_lead`` for ``new_lead``; the shipped
``lead_reassigned`` for ``reassigned`` (sent whenever there is an [smtp]
table: the reminder ladder's notice must not depend on ``new_lead``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from leadtap.core.config.load import Config
from leadtap.core.store.engine import Database, utcnow
from leadtap.core.errors import MailSendError
from leadtap.core.store.outbox import remember_digest
from leadtap.core.store.notifications import (
    CONFIRMATION,
    DEAL_CLOSED,
    DEAL_STALE,
    NEW_LEAD,
    ONBOARDING,
    OUTBOX,
    REASSIGNED,
    Owed,
    finish,
    load_owed,
    release,
    retry_later,
)
from leadtap.core.use_cases.deal_changes import warning_moot
from leadtap.core.use_cases.deal_views import deal_row, onboarding_view
from leadtap.core.rules.reply_grammar import help_text
from leadtap.core.use_cases.listing import lead_dict
from leadtap.core.use_cases.views import open_task_list, reply_view
from leadtap.core.logs import get_logger
from leadtap.scheduler.mailer import SmtpMailer
from leadtap.scheduler.outbox import claim_due, send_each, send_one
from leadtap.scheduler.reminders import MailerFactory
from leadtap.scheduler.render import Renderer, ReplyHeaders, compose
from leadtap.scheduler.workflows import StepReport

BATCH = 200


@dataclass
class SendReport:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    dropped: int = 0
    steps: StepReport | None = None  # the workflows' steps run in the same call
    webhooks: object = None  # the webhook deliveries of the same call (scheduler.webhooks.WebhookReport)

    def summary(self) -> str:
        said = (f"notifications: {self.sent} sent, {self.retry} to retry, {self.failed} refused, "
                f"{self.dropped} no longer owed")
        parts = [self.steps.summary() if self.steps is not None else None, said,
                 self.webhooks.summary() if self.webhooks is not None else None]
        return "; ".join(part for part in parts if part)

    @property
    def anything(self) -> bool:
        return (bool(self.sent or self.retry or self.failed or self.dropped) or bool(self.steps and self.steps.anything)
                or bool(self.webhooks and self.webhooks.anything))


class NotificationSender:
    def __init__(self, config: Config, db: Database, renderer: Renderer, mailer: MailerFactory,
                 clock: Callable[[], datetime] = utcnow, should_stop: Callable[[], bool] = lambda: False,
                 reply_headers: ReplyHeaders | None = None):
        self.config, self.db, self.renderer, self.mailer = config, db, renderer, mailer
        self.reply_headers = reply_headers
        self.clock, self.should_stop = clock, should_stop
        self.settings = config.notifications
        deals = config.opportunities.deals
        # a confirmation's /help, with examples from its lead's pipeline
        self.help = {p.key: help_text(p.statuses, p.disqualify_reasons, deals.stages, deals.lost_reasons)
                     for p in config.every_pipeline}
        self.log = get_logger("leadtap.notifications")

    def run(self) -> SendReport:
        report = SendReport()
        if self.config.smtp is None:
            return report
        now = self.clock()
        token = uuid.uuid4().hex
        mine = claim_due(self.db, OUTBOX, now, token, BATCH)
        if mine:
            send_each(self.mailer, mine, lambda mailer, row_id: self.settle(mailer, row_id, token, now, report),
                      self.should_stop, lambda left: self.release(left, token))
        return report

    def settle(self, mailer: SmtpMailer, notification_id: int, token: str, now: datetime, report: SendReport) -> bool:
        """Read it again (a reassignment meanwhile drops it), send it, record
        the answer; False when the rest should wait."""
        with self.db.transaction() as session:
            found = load_owed(session, [notification_id])
            if not found:
                return True  # its lead is gone
            item = found[0]
            context = self.context(session, item)
        n = item.notification
        why_not = item.stale or (None if self.template(n.kind) else f"{n.kind} emails are off in the config")
        if why_not is None and n.kind == DEAL_STALE:
            why_not = warning_moot(item.lead, item.opportunity, self.config.opportunities.deals)
        if why_not:
            self.record(finish, n.id, token, now, "dropped", why_not)
            report.dropped += 1
            return True
        error = self.send(mailer, item, context, now)
        if error is None:
            self.record(finish, n.id, token, now, "sent")
            report.sent += 1
        elif error.permanent:
            self.record(finish, n.id, token, now, "failed", str(error))
            report.failed += 1
        elif error.sweep_wide and not error.timed_out:
            self.release([n.id], token)
            return False
        else:  # this email's failure (a 4xx, a timeout): an attempt, a backoff
            with self.db.transaction() as session:
                state = retry_later(session, n.id, token, now, str(error), self.settings.max_attempts)
            report.retry += state == "pending"
            report.failed += state == "failed"
            return not error.sweep_wide  # after a timeout the server may be stuck: the rest waits
        return True

    def template(self, kind: str) -> str | None:
        onboarding = self.config.opportunities.deals.onboarding
        return {NEW_LEAD: self.settings.new_lead, REASSIGNED: "lead_reassigned", DEAL_STALE: "deal_stale",
                DEAL_CLOSED: "deal_closed_stale", ONBOARDING: onboarding.template if onboarding else None,
                CONFIRMATION: "command_confirmation"}.get(kind)

    def send(self, mailer: SmtpMailer, item: Owed, context: dict, now: datetime) -> MailSendError | None:
        n = item.notification
        return send_one(mailer, self.log, "notification",
                        lambda: self.email(self.renderer.render(self.template(n.kind), context), item, now),
                        lead_id=n.lead_id, recipient=n.recipient, kind=n.kind)

    def email(self, rendered, item: Owed, now: datetime):
        """The email; a confirmation is threaded under the reply it answers, and
        with ``[commands]`` every one carries a token a reply can act under."""
        n, reply = item.notification, item.reply
        email = compose(rendered, self.config.smtp.sender, [n.recipient], now,
                        "confirmation" if reply is not None else "notification")
        if reply is not None:
            email.replace_header("Auto-Submitted", "auto-replied")
            if reply.message_id:
                email["In-Reply-To"] = reply.message_id
                email["References"] = " ".join([*reply.references, reply.message_id])
        if self.reply_headers is not None:
            digest = reply is not None and reply.digest
            self.reply_headers.apply(email, n.recipient, now, None if digest or n.lead_id is None else n.lead_id)
            if digest:  # its answer may go on with the leads that reply named
                with self.db.transaction() as session:
                    remember_digest(session, email["Message-ID"], n.recipient,
                                    [r["lead_id"] for r in reply.results if r["lead_id"]], now,
                                    self.reply_headers.digest_max_age)
        return email

    def context(self, session, item: Owed) -> dict:
        """``new_lead``: the recipient is the owner; ``reassigned``: the owner is
        the one who has it now; the deal kinds: the deal, with the staleness
        limit it reaches first; ``onboarding``: the hand-off and its tasks."""
        recipient, owner, deal, lead = item.recipient, item.owner, item.opportunity, item.lead
        if recipient is None:
            return {}  # dropped, not sent
        return {
            "lead": lead_dict(lead, owner, deal) if lead else None,
            "tasks": open_task_list(session, lead.id) if lead else [],
            "recipient": {"email": recipient.email, "name": recipient.name},
            "owner": {"email": owner.email, "name": owner.name} if owner else None,
            "lead_url": self.config.reminders.link(lead.id) if lead else None,
            "deal": deal_row(deal, lead, owner, self.config.opportunities.deals) if deal else None,
            "onboarding": onboarding_view(session, item.onboarding) if item.onboarding else None,
            "reply": reply_view(item.reply, self.help.get(lead.pipeline if lead else None, self.help[None]))
            if item.reply else None,
            "commands": self.reply_headers is not None,  # a reply can act: the email says how
        }

    def record(self, step, notification_id: int, token: str, now: datetime, state: str,
               error: str | None = None) -> None:
        with self.db.transaction() as session:
            step(session, notification_id, token, now, state, error)

    def release(self, ids: list[int], token: str) -> None:
        if ids:
            with self.db.transaction() as session:
                release(session, ids, token)
