"""An owner away (a holiday): who may say so, and until when. Plain code.

While away an owner takes no new leads — not by the rotation, not as a
returning contact's earlier owner — and their leads' reminders go to the
escalation role or wait (``[reminders] while_away``); they keep their leads.
"""

from __future__ import annotations

from datetime import datetime

from leadtap.core.rules.lifecycle import Actor, Refused


def check_away(owner: str, until: datetime | None, actor: Actor, now: datetime) -> None:
    """An owner sets themselves away; an admin (or the command line) anyone."""
    check_self(owner, actor, "away")
    if until is not None and until <= now:
        raise Refused(f"away until {until:%Y-%m-%d %H:%M} UTC: that is not in the future")


def check_back(owner: str, away: bool, actor: Actor) -> None:
    check_self(owner, actor, "back")
    if not away:
        raise Refused(f"{owner} is not away")


def check_self(owner: str, actor: Actor, what: str) -> None:
    if not actor.admin and actor.who != owner:
        raise Refused(f"only {owner} or an admin says they are {what}")
