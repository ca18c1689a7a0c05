"""What listing leads needs, through SQLAlchemy Core only (no ORM): a
lead as the command line and the webhooks show it, and ``leads list`` —
so that command starts without loading the ORM (``bench/startup.py``)."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Iterator

from sqlalchemy import case, func, select, true

from leadtap.core.store.tables import leads, of_pipeline, opportunities as deals, owners

LEAD_COLUMNS = ("id", "name", "email", "phone", "company", "status", "owner", "source", "mailbox", "received_at")


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def lead_dict(lead, owner, opportunity) -> dict:
    """A lead (with its owner and deal, or None) as ``leads show`` gives it: from ORM objects or a Core row's parts."""
    return {
        "id": lead.id,
        "name": lead.name,
        "email": lead.email,
        "phone": lead.phone,
        "company": lead.company,
        "message": lead.message,
        "fields": lead.fields or {},
        "source": lead.source,
        "type": lead.type,
        "status": lead.status,
        "pipeline": lead.pipeline,  # None: the default pipeline
        "status_changed_at": iso(lead.status_changed_at),
        "owner": owner.email if owner else None,
        "owner_name": owner.name if owner else None,
        "opportunity": deal_dict(opportunity) if opportunity else None,
        "mailbox": lead.mailbox,
        "subject": lead.subject,
        "received_at": iso(lead.received_at),
        "created_at": iso(lead.created_at),
        "warnings": lead.warnings or [],
        "last_activity_at": iso(lead.last_activity_at),
        "snoozed_until": iso(lead.snoozed_until),
        "follow_up_of": lead.follow_up_of,
        "blocked": lead.blocked,  # why automation could not move it on, until it moves
    }


def deal_dict(opportunity) -> dict:
    fields = dict(opportunity.fields or {})
    return {
        "id": opportunity.id,
        "lead_id": opportunity.lead_id,
        "title": opportunity.title,
        "stage": opportunity.stage,
        "amount": fields.get("amount"),
        "close_date": fields.get("close_date"),
        "fields": fields,
        "created_at": iso(opportunity.created_at),
        "stage_changed_at": iso(opportunity.stage_changed_at),
        "closed_at": iso(opportunity.closed_at),
        "lost_reason": opportunity.lost_reason,
        "warned_for": iso(opportunity.warned_for),
    }


SORTS = ("id", "received", "status", "owner", "stale")


def list_leads(reader, status: str | None = None, owner: str | None = None,
               snoozed_at: datetime | None = None, quiet_since: datetime | None = None,
               closed: tuple[str, ...] = (), sort: str = "id", desc: bool = False, limit: int | None = None,
               statuses: tuple[str, ...] = (), pipeline: tuple[str | None] | None = None) -> Iterator[dict]:
    """Leads as ``lead_dict`` gives them, read through SQLAlchemy Core
    (``reader``: a Connection, or a Session). ``snoozed_at``: only leads
    snoozed at that time; ``quiet_since``: only open leads with no activity
    since then; ``pipeline``: (its key,) — its leads only. ``sort``: one of
    ``SORTS`` — ``status`` in the pipeline's order (``statuses``), ``stale``
    the longest quiet first — then by id; ``limit``: the first that many."""
    query = (
        select(leads, owners, deals)
        .outerjoin(owners, owners.c.id == leads.c.owner_id)
        .outerjoin(deals, deals.c.lead_id == leads.c.id)
        .order_by(*ordering(sort, desc, statuses))
    )
    if status:
        query = query.where(leads.c.status == status)
    if owner:
        query = query.where(owners.c.email == owner.lower())
    if pipeline is not None:
        query = query.where(of_pipeline(pipeline[0]))
    if snoozed_at is not None:
        query = query.where(leads.c.snoozed_until > snoozed_at)
    if quiet_since is not None:
        query = query.where(leads.c.status.not_in(closed) if closed else true(),
                            func.coalesce(leads.c.last_activity_at, leads.c.created_at) < quiet_since)
    if limit is not None:
        query = query.limit(limit)
    for row in reader.execute(query.execution_options(yield_per=500)):
        found = row._mapping
        yield lead_dict(row_of(found, leads), row_of(found, owners), row_of(found, deals))


def row_of(found, table) -> SimpleNamespace | None:
    """A table's part of a joined row (None: the outer join found none), its columns as attributes."""
    if found[table.c[next(iter(table.primary_key)).name]] is None:
        return None
    return SimpleNamespace(**{column.name: found[column] for column in table.c})


def ordering(sort: str, desc: bool, statuses: tuple[str, ...]) -> list:
    """The ORDER BY of a listing: the key, then the id (the same way round)."""
    keys = {
        "id": [],
        "received": [leads.c.received_at],
        "status": [case({name: index for index, name in enumerate(statuses)}, value=leads.c.status,
                        else_=len(statuses)), leads.c.status] if statuses else [leads.c.status],
        "owner": [owners.c.email.is_(None), owners.c.email],
        "stale": [func.coalesce(leads.c.last_activity_at, leads.c.created_at)],
    }[sort]
    return [key.desc() if desc else key for key in (*keys, leads.c.id)]
