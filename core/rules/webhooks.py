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
import secrets
from datetime import datetime, timedelta, timezone

from leadtap.core.rules import lifecycle

EVENTS = ("lead.created", "lead.status_changed", "lead.assigned", "deal.stage_changed", "deal.won", "deal.lost")
FORMATS = ("json", "slack", "teams")  # the Standard Webhooks JSON; a Slack incoming webhook; a Teams workflow
VERSION = 1  # of the payload: a field's meaning changes only with a new version


def secret_bytes(secret: str) -> bytes:
    """The key of a ``whsec_…`` secret; ValueError when it is not one."""
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret starts with whsec_")
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ and base64") from None


def webhook_id(at: datetime) -> str:
    """A delivery's ``webhook-id``: ``msg_``, the time ``at`` in whole
    milliseconds since 1970 and 80 random bits, in 32 hex digits. Ids of a
    later millisecond sort after earlier ones, so the table's unique index
    takes each new one near its end: a random id costs SQLite's insert nearly
    three times as much a row (``bench/ingest.py --webhooks``). Within one
    millisecond their order is random: the order of events is the order of
    delivery, not of ids."""
    milliseconds = max(0, (at - EPOCH) // timedelta(milliseconds=1))
    return f"msg_{milliseconds:012x}{secrets.token_hex(10)}"


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


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


# --- chat formats ------------------------------------------------------------------

HEADLINES = {"lead.created": "New lead", "lead.status_changed": "Lead moved", "lead.assigned": "Lead assigned",
             "deal.stage_changed": "Deal moved", "deal.won": "Deal won", "deal.lost": "Deal lost", "ping": "Ping"}


def summary(event: dict, link: str | None) -> tuple[str, list[tuple[str, str]], str]:
    """A chat message's parts: its headline, its facts (label, value) and the
    first lines of the enquiry — plain text, each value cut short."""
    lead, change = event["data"].get("lead") or {}, event["data"].get("change") or {}
    who = lead.get("name") or lead.get("email") or lead.get("phone") or "(no name)"
    headline = f"{HEADLINES.get(event['type'], event['type'])}: #{lead.get('id', '')} {who}".strip()
    if "to" in change and event["type"] != "lead.created":
        headline += f" → {change['to']}"
    facts = [(label, str(value)[:200]) for label, value in (
        ("Company", lead.get("company")), ("Email", lead.get("email")), ("Phone", lead.get("phone")),
        ("Source", lead.get("source")), ("Status", lead.get("status")), ("Owner", lead.get("owner")),
        ("Deal", (lead.get("opportunity") or {}).get("stage"))) if value]
    message = "\n".join((lead.get("message") or "").strip().splitlines()[:5])[:500]
    return headline, facts, message


def slack_message(event: dict, link: str | None) -> dict:
    """A Slack incoming webhook's message (Block Kit), with ``text`` for notifications."""
    headline, facts, message = summary(event, link)
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": headline[:150]}}]
    if facts:
        blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{label}*\n{escape_slack(value)}"}
                                                     for label, value in facts[:10]]})
    if message:
        blocks.append({"type": "section", "text": {"type": "plain_text", "text": message}})
    if link:
        blocks.append({"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text",
                                                                                   "text": "Open the lead"},
                                                        "url": link}]})
    return {"text": headline, "blocks": blocks}


def escape_slack(text: str) -> str:
    """Slack's mrkdwn takes &, < and > as markup: a lead's data shows as written."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def teams_card(event: dict, link: str | None) -> dict:
    """A Teams Workflows webhook's message: one Adaptive Card."""
    headline, facts, message = summary(event, link)
    body: list[dict] = [{"type": "TextBlock", "text": headline, "weight": "Bolder", "size": "Medium", "wrap": True}]
    if facts:
        body.append({"type": "FactSet", "facts": [{"title": label, "value": value} for label, value in facts]})
    if message:
        body.append({"type": "TextBlock", "text": message, "wrap": True})
    card = {"type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "version": "1.4",
            "body": body}
    if link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the lead", "url": link}]
    return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                "content": card}]}


def formatted(fmt: str, event: dict, link: str | None) -> dict:
    """What is POSTed: the event itself (json), or a chat message made of it."""
    if fmt == "slack":
        return slack_message(event, link)
    if fmt == "teams":
        return teams_card(event, link)
    return event
