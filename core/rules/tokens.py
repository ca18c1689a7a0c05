"""Reply tokens: who may answer a leadtap email with commands.

Every email leadtap sends carries a token in its ``Message-ID``; a reply
names that Message-ID in ``In-Reply-To``/``References``. The token says what
the email was about (a lead, or a digest) and when it was issued, and its
MAC — HMAC-SHA256 under the ``[commands]`` secret — covers those and the
address it was sent to. The address itself is not in the token: a reply is
checked against the MAC with its own ``From``, so a token answers only for
the person it was sent to, and one altered in any part, or used from another
address, is simply not valid.

    <lt1.L42.mxk3q0.k2q7xm4a.Z3JkZ2...@example.com>
     |   |   |      |        └ the MAC, 128 bits, base32
     |   |   |      └ a random nonce: two emails in one second never share a Message-ID
     |   |   └ issued at, milliseconds since the epoch, base 36
     |   └ L<lead id>, or D0 for a digest
     └ the format's version

Plain code (``hmac``, ``hashlib``): no clock, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

VERSION = "lt1"
MIN_SECRET = 32  # bytes
TOKEN_RE = re.compile(r"<(lt1)\.([LD])(\d{1,19})\.([0-9a-z]{1,13})\.([a-z2-7]{8})\.([A-Z2-7]{26})@[^<>\s]+>")
DIGEST = "digest"
LEAD = "lead"


@dataclass(frozen=True)
class Token:
    """What a valid token says: the email was about ``lead_id`` (None: a
    digest), sent to ``recipient`` at ``issued_at``."""

    kind: str  # lead | digest
    lead_id: int | None
    recipient: str
    issued_at: datetime
    mac: str = ""  # names the email: a digest's leads are recorded under it


class InvalidToken(Exception):
    """Why a reply's token does not authorise it, in words for the ledger."""


def message_id(secret: bytes, recipient: str, issued_at: datetime, domain: str, lead_id: int | None = None,
               nonce: str | None = None) -> str:
    """A Message-ID carrying a token for an email about ``lead_id`` (None: a digest) to ``recipient``."""
    subject = f"L{lead_id}" if lead_id is not None else "D0"
    issued = to_base36(int(issued_at.timestamp() * 1000))
    nonce = nonce or base64.b32encode(secrets.token_bytes(5)).decode("ascii").lower()
    return f"<{VERSION}.{subject}.{issued}.{nonce}.{mac(secret, subject, issued, nonce, recipient)}@{domain}>"


def mac(secret: bytes, subject: str, issued: str, nonce: str, recipient: str) -> str:
    signed = "|".join((VERSION, subject, issued, nonce, recipient.strip().lower())).encode("utf-8")
    digest = hmac.new(secret, signed, hashlib.sha256).digest()[:16]
    return base64.b32encode(digest).decode("ascii").rstrip("=")


def mac_of(message_id: str) -> str | None:
    """The MAC of a token-carrying Message-ID: the name its email is recorded under."""
    found = TOKEN_RE.fullmatch(message_id)
    return found.group(6) if found else None


def carried(thread_ids: Iterable[str]) -> list[str]:
    """The token-shaped Message-IDs a reply names (newest reference last)."""
    return [tid for tid in thread_ids if TOKEN_RE.fullmatch(tid)]


def verify(secret: bytes, thread_ids: Iterable[str], sender: str, now: datetime, max_age: timedelta,
           digest_max_age: timedelta | None = None) -> Token:
    """The token among ``thread_ids`` that was issued to ``sender`` and is
    still young enough (a digest's: ``digest_max_age``); ``InvalidToken``
    says why there is none."""
    found = carried(thread_ids)
    if not found:
        raise InvalidToken("no leadtap token in In-Reply-To or References")
    expired = None
    for candidate in dict.fromkeys(found):  # In-Reply-To first: the email answered
        version, kind, number, issued, nonce, given = TOKEN_RE.fullmatch(candidate).groups()
        subject = f"{kind}{number}"
        if not hmac.compare_digest(given, mac(secret, subject, issued, nonce, sender)):
            continue
        issued_at = datetime.fromtimestamp(int(issued, 36) / 1000, timezone.utc)
        valid_for = max_age if kind == "L" or digest_max_age is None else digest_max_age
        if now - issued_at > valid_for:
            expired = (issued_at, valid_for)
            continue
        return Token(LEAD if kind == "L" else DIGEST, int(number) if kind == "L" else None,
                     sender.strip().lower(), issued_at, given)
    if expired is not None:
        issued_at, valid_for = expired
        raise InvalidToken(f"the token expired: issued {issued_at:%Y-%m-%d %H:%M} UTC, "
                           f"valid for {describe_span(valid_for)}")
    raise InvalidToken(f"the token was not issued to {sender} (or was altered)")


def describe_span(span: timedelta) -> str:
    """``30 days``, ``1 day 6 hours``, ``2 hours``, ``45 minutes``: never "0 days"."""
    minutes = int(span.total_seconds() // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    parts = [(days, "day"), (hours, "hour"), (minutes, "minute")]
    words = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in parts if n][:2]
    return " ".join(words) or f"{int(span.total_seconds())} seconds"


def to_base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = ""
    while True:
        number, rest = divmod(number, 36)
        text = digits[rest] + text
        if number == 0:
            return text
