"""The outbox of emails owed to owners about leads: ``new_lead`` (the lead is
yours now), ``reassigned`` (the reminder ladder gave your lead to the next
owner), and of their deals: ``onboarding`` (a won deal is yours to onboard),
``deal_stale`` (it closes soon) and ``deal_closed_stale`` (it was closed).

A notification is *owed* in the transaction that makes it so — ingest's
batch, a reassignment — as a ``pending`` row, unique per (lead, recipient,
kind): a lead that comes back to an owner who was told is not announced
twice; one whose email was dropped or failed is owed again.
Nothing is sent from inside that transaction. A sender later claims rows one
by one (a conditional update that only one worker wins), sends, and records
the answer: sent; refused for good; or, for a failure that may pass, pending
again after a backoff. A claim whose sender died is taken over once its lease
runs out: delivery is at-least-once, as for reminders.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from leadtap.core.store.db import CommandReply, Lead, Notification, OnboardingRecord, Opportunity, Owner
from leadtap.core.store.outbox import Outbox

NEW_LEAD = "new_lead"
REASSIGNED = "reassigned"
ONBOARDING = "onboarding"  # a won deal handed to you (core.use_cases.deal_changes)
CONFIRMATION = "confirmation"  # what your reply's commands did (core.use_cases.reply_changes)
DEAL_STALE = "deal_stale"  # your deal closes soon by the staleness policy
DEAL_CLOSED = "deal_closed_stale"  # your deal was closed by it


def owe(session: Session, lead_id: int, recipient: str, kind: str, now: datetime) -> bool:
    """Owe ``recipient`` the ``kind`` email about ``lead_id`` (the caller holds
    the lead's row lock). A ``new_lead`` already sent, or being sent, is not
    owed again; any other earlier row is armed again. True when something is owed anew."""
    row = session.scalar(select(Notification).where(
        Notification.lead_id == lead_id, Notification.recipient == recipient, Notification.kind == kind))
    if row is None:
        session.add(Notification(**pending_row(lead_id, recipient, kind, now)))
        return True
    if row.state == "claimed" or (kind == NEW_LEAD and row.state in ("pending", "sent")):
        return False
    row.state, row.attempts, row.next_attempt_at, row.created_at = "pending", 0, now, now
    row.token = row.claimed_at = row.sent_at = row.last_error = None
    return True


def pending_row(lead_id: int | None, recipient: str, kind: str, now: datetime) -> dict:
    """A notification owed from ``now``: the one row shape, for a single owe and a batch's."""
    return {"lead_id": lead_id, "recipient": recipient, "kind": kind, "state": "pending", "attempts": 0,
            "next_attempt_at": now, "created_at": now}


def new_rows(leads: list[tuple[int, str]], kind: str, now: datetime) -> list[dict]:
    """Rows for leads made in one batch: (lead id, owner's email) each."""
    return [pending_row(lead_id, recipient, kind, now) for lead_id, recipient in leads]


OUTBOX = Outbox(Notification)
claimable, due_ids, claim = OUTBOX.claimable, OUTBOX.due_ids, OUTBOX.claim


@dataclass(frozen=True)
class Owed:
    """A claimed notification with what its email needs."""

    notification: Notification
    lead: Lead | None  # None: a confirmation of a digest reply that named no lead
    owner: Owner | None  # the lead's owner now
    recipient: Owner | None
    opportunity: Opportunity | None = None
    onboarding: OnboardingRecord | None = None
    reply: CommandReply | None = None  # a confirmation's

    @property
    def stale(self) -> str | None:
        """Why it should no longer be sent, or None."""
        kind = self.notification.kind
        if self.recipient is None or not self.recipient.active:
            return f"{self.notification.recipient} is no longer an active owner"
        if kind in (NEW_LEAD, DEAL_STALE) and (self.owner is None or self.owner.id != self.recipient.id):
            return f"the lead is no longer {self.notification.recipient}'s"
        if kind == DEAL_STALE and (self.opportunity is None or self.opportunity.warned_for is None):
            return "the deal moved on since the warning"
        if kind == ONBOARDING and (self.onboarding is None or self.onboarding.owner_id != self.recipient.id):
            return f"the onboarding is no longer {self.notification.recipient}'s"
        return None


def load_owed(session: Session, notification_ids: list[int]) -> list[Owed]:
    """The claimed rows with their leads, people and deals, read now (just before a send)."""
    owners = {o.email: o for o in session.scalars(select(Owner))}
    by_id = {o.id: o for o in owners.values()}
    rows = session.execute(select(Notification, Lead, Opportunity, OnboardingRecord, CommandReply)
                           .outerjoin(Lead, Lead.id == Notification.lead_id)
                           .outerjoin(Opportunity, Opportunity.lead_id == Lead.id)
                           .outerjoin(OnboardingRecord, OnboardingRecord.opportunity_id == Opportunity.id)
                           .outerjoin(CommandReply, CommandReply.id == Notification.reply_id)
                           .where(Notification.id.in_(notification_ids)).order_by(Notification.id))
    return [Owed(n, lead, by_id.get(lead.owner_id) if lead else None, owners.get(n.recipient), deal, onboarding,
                 reply)
            for n, lead, deal, onboarding, reply in rows]


finish, retry_later, release = OUTBOX.finish, OUTBOX.retry_later, OUTBOX.release


def listed(session: Session, limit: int = 200) -> list[dict]:
    rows = session.execute(select(Notification, Lead.name).outerjoin(Lead, Lead.id == Notification.lead_id)
                           .order_by(Notification.id.desc()).limit(limit))
    return [{"id": n.id, "lead_id": n.lead_id, "lead": name, "kind": n.kind, "recipient": n.recipient,
             "state": n.state, "attempts": n.attempts, "error": n.last_error,
             "sent_at": n.sent_at.isoformat() if n.sent_at else None} for n, name in rows]
