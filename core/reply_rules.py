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

RESULT_RE = re.compile(r"([A-Za-z0-9_.-]+)\s*=\s*([A-Za-z0-9_-]+)(.*)", re.DOTALL)  # method=result properties
PROPERTY_RE = re.compile(r"(?:^|\s)([a-z]+\.[a-z-]+)\s*=\s*(\S+)", re.IGNORECASE)


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
    if not person.active:  # an admin too: an inactive owner acts for nobody
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
    """Our receiving server's ``Authentication-Results`` must pass DMARC for
    the From domain, or DKIM for it (or a parent domain). Its headers are the
    first run of those naming its id, from the top: RFC 8601 has it remove any
    below that claim its id, so one a sender wrote is not read. Only each
    result's own method and properties count: comments and values are not
    searched for words."""
    domain = sender.rpartition("@")[2].lower()
    ours = our_results(authserv_id, headers)
    if not ours:
        raise NotAuthorised(f"no Authentication-Results from {authserv_id}")
    for method, result, properties in (r for header in ours for r in results_of(header)[1]):
        if result != "pass":
            continue
        if method == "dmarc" and properties.get("header.from") == domain:
            return
        signer = properties.get("header.d")
        if method == "dkim" and signer and (domain == signer or domain.endswith("." + signer)):
            return
    raise NotAuthorised(f"{authserv_id} did not pass DMARC or DKIM for {domain}")


def our_results(authserv_id: str, headers: Sequence[str]) -> list[str]:
    """The first run of headers naming ``authserv_id``, from the top."""
    found: list[str] = []
    for header in headers:
        if results_of(header)[0] == authserv_id.lower():
            found.append(header)
        elif found:
            break
    return found


def results_of(header: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """An ``Authentication-Results`` value as (authserv-id, [(method, result, properties)])."""
    parts = split_results(header)
    words = parts[0].split() if parts else []
    found = []
    for part in parts[1:]:
        match = RESULT_RE.match(part.strip())
        if match is None:
            continue
        properties = {key.lower(): value.strip('"').lower().lstrip("@") for key, value in PROPERTY_RE.findall(match[3])}
        found.append((match[1].lower(), match[2].lower(), properties))
    return (words[0].lower() if words else ""), found


def split_results(header: str) -> list[str]:
    """The value split at ``;`` outside quotes, with (nested) comments removed."""
    parts, current, depth, quoted = [], [], 0, False
    for char in header[:4000]:
        if quoted:
            current.append(char)
            quoted = char != '"'
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif depth:
            continue
        elif char == '"':
            quoted = True
            current.append(char)
        elif char == ";":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts
