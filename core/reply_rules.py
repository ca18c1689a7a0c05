"""Who may act by reply: the checks a reply to a leadtap email must pass
before any of its commands runs.

A reply runs only when
1. its ``In-Reply-To``/``References`` carry a valid token (``core.tokens``),
2. issued to its ``From`` address (the token's MAC covers the address),
3. younger than ``token_max_age``,
4. it is not an auto-reply (``ingest.classify`` sets those aside before),
5. with ``authserv_id`` set: the receiving server's ``Authentication-Results``
   shows ``dmarc=pass``, or ``dkim=pass`` for the From domain,
6. and the person may act now: an active owner who still owns the lead the
   token names, or an admin (a reassignment revokes the old owner's replies).
   For a digest, the lead each command names is checked the same way, per command.

A reply that fails is recorded with the reason and gets no answer: no mail
goes back to an address that may be forged.

Plain code: no SQL, no clock, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from leadtap.core import tokens
from leadtap.core.tokens import InvalidToken, Token

METHOD_RE = re.compile(r"\b(dmarc|dkim)\s*=\s*(\w+)([^;]*)", re.IGNORECASE)
PROPERTY_RE = re.compile(r"\bheader\.(d|from|i)\s*=\s*@?([^\s;()]+)", re.IGNORECASE)


@dataclass(frozen=True)
class ReplyPolicy:
    secret: bytes
    max_age: timedelta
    authserv_id: str | None = None
    admins: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Person:
    """The sender as the owners' table knows them (None: not an owner)."""

    email: str
    active: bool


class NotAuthorised(Exception):
    """Why a reply does not run, in words for the ledger and the log."""


def authorise(policy: ReplyPolicy, thread_ids: Sequence[str], sender: str, person: Person | None,
              auth_results: Sequence[str], now: datetime) -> Token:
    """The token the reply acts under, or ``NotAuthorised`` with the reason."""
    if person is None:
        raise NotAuthorised(f"{sender} is not an owner")
    try:
        token = tokens.verify(policy.secret, thread_ids, sender, now, policy.max_age)
    except InvalidToken as exc:
        raise NotAuthorised(str(exc)) from None
    if policy.authserv_id:
        check_authentication(policy.authserv_id, auth_results, sender)
    if not person.active and person.email not in policy.admins:
        raise NotAuthorised(f"{sender} is no longer an active owner")
    return token


def may_act(person: str, admins: frozenset[str], lead_id: int, lead_owner: str | None,
            owner_active: bool) -> str | None:
    """Why ``person`` may not act on the lead now, or None when they may."""
    if person in admins:
        return None
    if lead_owner != person:
        return f"lead {lead_id} is not yours" + (f" (it is {lead_owner}'s)" if lead_owner else " (it has no owner)")
    if not owner_active:
        return f"{person} is no longer an active owner"
    return None


def check_authentication(authserv_id: str, headers: Sequence[str], sender: str) -> None:
    """The topmost ``Authentication-Results`` of our receiving server must
    pass DMARC, or DKIM for the From domain (RFC 8601: a header claiming our
    server's id that it did not add is removed by it, so the topmost is its own)."""
    domain = sender.rpartition("@")[2].lower()
    ours = [h for h in headers if h.split(";", 1)[0].split()[:1] == [authserv_id]]
    if not ours:
        raise NotAuthorised(f"no Authentication-Results from {authserv_id}")
    for method, result, rest in METHOD_RE.findall(ours[0]):
        if result.lower() != "pass":
            continue
        found = {key.lower(): value.lower() for key, value in PROPERTY_RE.findall(rest)}
        aligned = found.get("from" if method.lower() == "dmarc" else "d")
        if aligned is None and method.lower() == "dmarc":
            return
        if aligned and (domain == aligned or domain.endswith("." + aligned)):
            return
    raise NotAuthorised(f"{authserv_id} did not pass DMARC or DKIM for {domain}")
