"""Webhooks: which change is which event, the payload, and its signature as
the Standard Webhooks specification (standardwebhooks.com) says it — so a
receiver verifies it with any of that specification's libraries.

Plain code: no SQL, no clock, no I/O.

- ``webhook-id``: the event's id, the same on every retry (receivers
  deduplicate on it);
- ``webhook-timestamp``: the attempt's time, in seconds since the epoch;
- ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256, under the
  secret (``whsec_`` and its base64), of ``id.timestamp.body``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime

from leadtap.core.rules import lifecycle

EVENTS = ("lead.created", "lead.status_changed", "lead.assigned", "deal.stage_changed", "deal.won", "deal.lost")
FORMATS = ("json",)
VERSION = 1  # of the payload: a field's meaning changes only with a new version


def secret_bytes(secret: str) -> bytes:
    """The key of a ``whsec_…`` secret; ValueError when it is not one."""
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ and base64") from None


def signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header's value."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def events_of(change: lifecycle.Change, won: str | None, lost: str | None) -> list[tuple[str, dict]]:
    """The webhook events a change is, each with what changed."""
    found: list[tuple[str, dict]] = []
    for event in change.events:
        if isinstance(event, lifecycle.Created):
            found.append(("lead.created", {"by": change.actor.who}))
        elif isinstance(event, lifecycle.StatusChanged):
            found.append(("lead.status_changed", {"from": event.old, "to": event.new, "reason": event.reason,
                                                  "by": change.actor.who}))
        elif isinstance(event, lifecycle.OwnerChanged):
            found.append(("lead.assigned", {"from": event.old, "to": event.new, "by": change.actor.who}))
        elif isinstance(event, lifecycle.StageChanged):
            what = {"from": event.old, "to": event.new, "reason": event.reason, "by": change.actor.who}
            found.append(("deal.stage_changed", what))
            if event.new in (won, lost) and event.new is not None:
                found.append(("deal.won" if event.new == won else "deal.lost", what))
    return found


def payload(event: str, at: datetime, lead: dict, change: dict) -> dict:
    """The event's JSON: its type and time, the lead as ``leads show`` gives
    it (with its deal), and what changed."""
    return {"type": event, "timestamp": at.isoformat(), "version": VERSION,
            "data": {"lead": lead, "change": change}}
