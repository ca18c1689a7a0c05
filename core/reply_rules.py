"""Who may act by reply: the checks a reply to a leadtap email must pass
before any of its commands runs.

A reply runs only when
1. its ``In-Reply-To``/``References`` carry a valid token (``core.tokens``),
2. issued to its ``From`` address (the token's MAC covers the address),
3. younger than ``token_max_age``,
4. it is not an auto-reply (``ingest.classify`` sets those aside before),
5. with ``authserv_id`` set: the receiving server's ``Authentication-Results``
   shows ``dmarc=pass``, or ``dkim=pass`` for the From domain (or, with
   ``require_dkim_identity = "mailbox"``, a DKIM pass for the From address),
6. and the person may act now: an active owner who still owns the lead the
   token names, or an admin (a reassignment revokes the old owner's replies).
   For a digest, the lead each command names is checked the same way, per command.

A reply that fails is recorded with the reason and gets no answer: no mail
goes back to an address that may be forged.

Plain code: no SQL, no clock, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Sequence

from leadtap.core import authres, tokens
from leadtap.core.authres import AuthResults, Result
from leadtap.core.tokens import InvalidToken, Token

DOMAIN, MAILBOX = "domain", "mailbox"  # what a DKIM/DMARC pass must vouch for (require_dkim_identity)


@dataclass(frozen=True)
class ReplyPolicy:
    secret: bytes
    max_age: timedelta
    authserv_id: str | None = None
    admins: frozenset[str] = frozenset()
    dkim_identity: str = DOMAIN  # mailbox: a DKIM signature for the From address itself (header.i)
    digest_max_age: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Person:
    """The sender as the owners' table knows them (None: not an owner)."""

    email: str
    active: bool


class NotAuthorised(Exception):
    """Why a reply does not run, in words for the ledger and the log."""


def authorise(policy: ReplyPolicy, thread_ids: Sequence[str], sender: str, person: Person | None,
              auth_results: Sequence[tuple[int, str]], now: datetime) -> Token:
    """The token the reply acts under, or ``NotAuthorised`` with the reason."""
    if person is None:
        raise NotAuthorised(f"{sender} is not an owner")
    try:
        token = tokens.verify(policy.secret, thread_ids, sender, now, policy.max_age, policy.digest_max_age)
    except InvalidToken as exc:
        raise NotAuthorised(str(exc)) from None
    if policy.authserv_id:
        check_authentication(policy.authserv_id, auth_results, sender, policy.dkim_identity)
    if not person.active:  # an admin too: an inactive owner acts for nobody
        raise NotAuthorised(f"{sender} is no longer an active owner")
    return token


def may_act(person: str, admins: frozenset[str], lead_id: int, lead_owner: str | None,
            owner_active: bool, tell_owner: bool = False) -> str | None:
    """Why ``person`` may not act on the lead now, or None when they may.
    ``tell_owner``: say whose it is (for the ledger; a confirmation says
    nothing of a lead the sender may not see)."""
    if person in admins:
        return None
    if lead_owner != person:
        if not tell_owner:
            return f"lead {lead_id} is not yours"
        return f"lead {lead_id} is not yours" + (f" (it is {lead_owner}'s)" if lead_owner else " (it has no owner)")
    if not owner_active:
        return f"{person} is no longer an active owner"
    return None


def check_authentication(authserv_id: str, fields: Sequence[tuple[int, str]], sender: str,
                         identity: str = DOMAIN) -> None:
    """Our receiving server's ``Authentication-Results`` must vouch for the
    From address.

    1. Its results are the topmost run of ``Authentication-Results`` fields
       naming its id (``our_results``): the run ends at the first other field,
       so one a sender wrote below the server's ``Received`` is never read.
    2. A DMARC verdict for the From domain decides: pass runs the reply, any
       other refuses it; a pass and a fail in one run are a conflict, refused.
    3. Without one, DKIM must pass for the From domain (or a parent domain),
       and no field of the run may fail it.
    4. ``identity = "mailbox"``: DKIM must pass with ``header.i`` equal to the
       From address itself — DMARC and a domain's signature vouch only for the
       domain, and anyone who can send as that domain could act."""
    domain = sender.rpartition("@")[2].lower()
    ours = our_results(authserv_id, fields)
    if not ours:
        raise NotAuthorised(f"no Authentication-Results from {authserv_id}")
    if identity == MAILBOX:
        check_mailbox_signature(authserv_id, ours, sender)
        return
    dmarc = {r.result for header in ours for r in header.results
             if r.method == "dmarc" and value(r, "header.from") == domain}
    if dmarc:
        check_one_verdict(authserv_id, dmarc, "DMARC", domain)
        return
    verdicts = {verdict for header in ours if (verdict := dkim_verdict(header, domain)) is not None}
    if verdicts:
        check_one_verdict(authserv_id, {"pass" if v else "fail" for v in verdicts}, "DKIM", domain)
        return
    raise NotAuthorised(f"{authserv_id} did not pass DMARC or DKIM for {domain}")


def check_one_verdict(authserv_id: str, verdicts: set[str], method: str, domain: str) -> None:
    if verdicts == {"pass"}:
        return
    if "pass" in verdicts:
        raise NotAuthorised(f"{authserv_id}'s results for {domain} conflict ({method} "
                            f"{' and '.join(sorted(verdicts))}): refused")
    raise NotAuthorised(f"{authserv_id} did not pass DMARC or DKIM for {domain}")


def dkim_verdict(header: AuthResults, domain: str) -> bool | None:
    """Whether this field passes DKIM for ``domain``: True when one of its
    signatures for it (or a parent domain) passes, False when it has some for
    it and none passes, None when it says nothing of it."""
    mine = [r for r in header.results if r.method == "dkim" and signs_for(value(r, "header.d"), domain)]
    if not mine:
        return None
    return any(r.result == "pass" for r in mine)


def check_mailbox_signature(authserv_id: str, ours: list[AuthResults], sender: str) -> None:
    address = sender.lower()
    signed = [r for header in ours for r in header.results
              if r.method == "dkim" and value(r, "header.i") == address]
    if signed and all(r.result == "pass" for r in signed):
        return
    if signed:
        raise NotAuthorised(f"{authserv_id}'s DKIM results for {address} conflict: refused")
    raise NotAuthorised(f"{authserv_id} did not pass a DKIM signature for the mailbox {address} (header.i)")


def signs_for(signer: str | None, domain: str) -> bool:
    return bool(signer) and (domain == signer or domain.endswith("." + signer))


def value(result: Result, name: str) -> str | None:
    """A property's value, lower case; a domain without the ``@`` some servers write before it."""
    found = result.properties.get(name)
    if not found:
        return None
    return found.lower() if name == "header.i" else found.lower().lstrip("@")


def our_results(authserv_id: str, fields: Sequence[tuple[int, str]]) -> list[AuthResults]:
    """The topmost run of ``Authentication-Results`` naming ``authserv_id``:
    from the first such field down to the first field of any other kind —
    another header (a ``Received``), or results of another server. ``fields``
    are (position in the header block, value), topmost first."""
    wanted = authserv_id.lower()
    found: list[AuthResults] = []
    last = None
    for position, text in fields:
        parsed = authres.parse(text)
        ours = parsed is not None and parsed.authserv_id == wanted
        if found and (not ours or position != last + 1):
            break
        if ours:
            found.append(parsed)
            last = position
    return found
