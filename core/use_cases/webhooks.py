"""Webhook events owed, in the transaction that makes them (a change to a
lead or its deal, a batch of new leads): one ``webhook_deliveries`` row per
event and endpoint that wants it, sent after the commit by
``scheduler.webhooks``. An endpoint that answered 410 Gone is owed nothing
more until its URL changes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Callable

from sqlalchemy import and_, exists, insert, select, update
from sqlalchemy.orm import Session, aliased

from leadtap.core.rules import webhooks
from leadtap.core.rules.lifecycle import Change
from leadtap.core.store.db import Lead, Opportunity, Owner, WebhookDelivery, WebhookEndpoint
from leadtap.core.store.outbox import Outbox
from leadtap.core.use_cases.listing import lead_dict


class OrderedOutbox(Outbox):
    """The outbox of webhook deliveries: a lead's events to one endpoint go
    out in order — a row is claimed only when every earlier one of its lead
    and endpoint is delivered (or given up), or claimed by the same sender
    just before it (who sends them in order, and stops at a failure)."""

    def claim_many(self, session: Session, row_ids: list[int], token: str, now: datetime) -> list[int]:
        """The rows of ``row_ids`` this sender wins, in two statements: all
        that no earlier undelivered row outside the batch holds back; then any
        whose earlier row another sender holds (or that was not due) given back."""
        m, earlier = WebhookDelivery, aliased(WebhookDelivery)
        outside = exists().where(earlier.endpoint == m.endpoint, earlier.lead_id == m.lead_id, earlier.id < m.id,
                                 earlier.state.in_(("pending", "claimed")), earlier.id.not_in(row_ids))
        session.execute(update(m).where(m.id.in_(row_ids), self.claimable(now), ~outside)
                        .values(state="claimed", token=token, claimed_at=now))
        held_back = exists().where(earlier.endpoint == m.endpoint, earlier.lead_id == m.lead_id, earlier.id < m.id,
                                   earlier.state.in_(("pending", "claimed")),
                                   ~and_(earlier.state == "claimed", earlier.token == token))
        session.execute(update(m).where(m.id.in_(row_ids), m.token == token, m.state == "claimed", held_back)
                        .values(state="pending", token=None, claimed_at=None))
        return list(session.scalars(select(m.id).where(m.id.in_(row_ids), m.token == token, m.state == "claimed")
                                    .order_by(m.id)))

    def claim(self, session: Session, row_id: int, token: str, now: datetime) -> bool:
        m, earlier = WebhookDelivery, aliased(WebhookDelivery)
        waiting = exists().where(earlier.endpoint == m.endpoint, earlier.lead_id == m.lead_id, earlier.id < m.id,
                                 earlier.state.in_(("pending", "claimed")),
                                 ~and_(earlier.state == "claimed", earlier.token == token))
        won = session.execute(update(m).where(m.id == row_id, self.claimable(now), ~waiting)
                              .values(state="claimed", token=token, claimed_at=now))
        return won.rowcount == 1


OUTBOX = OrderedOutbox(WebhookDelivery)


def live_endpoints(session: Session, hooks) -> list:
    """The configured endpoints that did not answer 410 Gone at their URL."""
    if not hooks:
        return []
    gone = {(e.name, e.url) for e in session.scalars(select(WebhookEndpoint))}
    return [hook for hook in hooks if (hook.name, hook.url) not in gone]


def row(hook, event: str, lead_id: int | None, body: str, now: datetime) -> dict:
    return {"endpoint": hook.name, "event": event, "lead_id": lead_id, "webhook_id": webhooks.webhook_id(now),
            "payload": body, "state": "pending", "attempts": 0, "next_attempt_at": now, "created_at": now}


def encoded(event: dict) -> str:
    """An event's JSON, compact, as it is POSTed: made once, whatever the number of endpoints."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def owe_change(session: Session, hooks, deals, lead: Lead, change: Change, depth: int = 0) -> None:
    """The events ``change`` is (``core.rules.webhooks.events_of``), for each
    endpoint that wants them. A change recorded inside another (``depth``)
    waits for it: the outer change's events are written first — a lead's
    events go out in the order of cause and effect."""
    found = webhooks.events_of(change, deals.won, deals.lost)
    wanted = [(hook, event, what) for event, what in found for hook in live_endpoints(session, hooks)
              if hook.wants(event)]
    waiting = session.info.setdefault("webhooks_owed", [])
    if wanted:
        data = lead_data(session, [lead.id])[lead.id]
        bodies = {(event, id(what)): encoded(webhooks.payload(event, change.at, data, what))
                  for _, event, what in wanted}
        waiting.append((depth, [row(hook, event, lead.id, bodies[(event, id(what))], change.at)
                                for hook, event, what in wanted]))
    if depth == 0:  # an inner change was owed first: the outer one's events go before it (a stable sort)
        owed = [each for _, rows in sorted(session.info.pop("webhooks_owed"), key=lambda item: item[0])
                for each in rows]
        if owed:
            write(session, owed)


def owe_created(session: Session, hooks, leads: Callable[[], dict[int, dict]], now: datetime, by: str = "mail",
                depth: int = 0) -> None:
    """Leads made from mail (a batch), or a follow-up lead while its
    lead's change is recorded (``depth``: after that change's events):
    ``lead.created`` for each lead ``leads()`` gives (its id: the lead as
    ``leads show`` gives it — asked only when an endpoint wants the event),
    to each endpoint that wants it."""
    wanting = [hook for hook in live_endpoints(session, hooks) if hook.wants("lead.created")]
    if not wanting:
        return
    bodies = {lead_id: encoded(webhooks.payload("lead.created", now, data, {"by": by}))
              for lead_id, data in leads().items()}
    if not bodies:
        return
    rows = [row(hook, "lead.created", lead_id, body, now) for lead_id, body in bodies.items() for hook in wanting]
    if depth:
        session.info.setdefault("webhooks_owed", []).append((depth, rows))
    else:
        write(session, rows)


def write(session: Session, rows: list[dict]) -> None:
    """The rows owed, in one executemany on the table (the ORM's bulk insert costs twice as much a row)."""
    session.connection().execute(insert(WebhookDelivery.__table__), rows)


def lead_data(session: Session, lead_ids: list[int]) -> dict[int, dict]:
    """Each lead as ``leads show`` gives it (its owner, its deal), in one query."""
    rows = session.execute(select(Lead, Owner, Opportunity).outerjoin(Owner, Owner.id == Lead.owner_id)
                           .outerjoin(Opportunity, Opportunity.lead_id == Lead.id).where(Lead.id.in_(lead_ids)))
    return {lead.id: lead_dict(lead, owner, deal) for lead, owner, deal in rows}
