"""Who may act by reply: the checks a reply to a leadtap email must pass
before any of its commands runs.

A reply runs only when
1. its ``In-Reply-To``/``References`` carry a valid token (``core.rules.tokens``),
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

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Mapping, Sequence

from leadtap.core.rules import authres
from leadtap.core.rules import tokens
from leadtap.core.rules.authres import AuthResults, Result
from leadtap.core.rules.tokens import InvalidToken, Token

DOMAIN, MAILBOX = "domain", "mailbox"  # what a DKIM/DMARC pass must vouch for (require_dkim_identity)


@dataclass(frozen=True)
class ReplyPolicy:
    secret: bytes
    max_age: timedelta
    authserv_id: str | None = None
    admins: frozenset[str] = frozenset()  # the default pipeline's
    dkim_identity: str = DOMAIN  # mailbox: a DKIM signature for the From address itself (header.i)
    digest_max_age: timedelta = timedelta(days=7)
    pipeline_admins: Mapping[str, frozenset[str]] = field(default_factory=dict)  # [[pipelines]]' by name

    def admins_of(self, pipeline: str | None) -> frozenset[str]:
        """Who may act on a lead of ``pipeline`` (its column: None for the default one)."""
        return self.admins if pipeline is None else self.pipeline_admins.get(pipeline, self.admins)


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
    2. Every DMARC and DKIM result in the run about the From domain must
       pass (``none`` says nothing: no policy, no signature): a fail, a
       temperror or a neutral anywhere refuses the reply, whatever passed —
       a forged pass written right below the server's fields meets the
       server's own verdict there.
    3. One of them must pass: DMARC for the From domain, or DKIM signed by
       it or a parent domain (``header.d``, else ``header.i``'s domain).
    4. ``identity = "mailbox"``: the pass must be DKIM's with ``header.i``
       equal to the From address itself — DMARC and a domain's signature
       vouch only for the domain."""
    domain = sender.rpartition("@")[2].lower()
    ours = our_results(authserv_id, fields)
    if not ours:
        raise NotAuthorised(f"no Authentication-Results from {authserv_id}")
    about = [r for header in ours for r in header.results if is_about(r, domain)]
    verdicts = {f"{r.method}={r.result}" for r in about if r.result != "none"}
    failed = sorted(v for v in verdicts if not v.endswith("=pass"))
    if failed and len(failed) < len(verdicts):
        raise NotAuthorised(f"{authserv_id}'s results for {domain} conflict "
                            f"({', '.join(sorted(verdicts))}): refused")
    if failed:
        raise NotAuthorised(f"{authserv_id} did not pass DMARC or DKIM for {domain} ({', '.join(failed)})")
    if identity == MAILBOX:
        if not any(r.method == "dkim" and r.result == "pass" and value(r, "header.i") == sender.lower()
                   for r in about):
            raise NotAuthorised(f"{authserv_id} did not pass a DKIM signature for the mailbox {sender.lower()} "
                                "(header.i)")
        return
    if not any(r.result == "pass" for r in about):
        raise NotAuthorised(f"{authserv_id} did not pass DMARC or DKIM for {domain}")


def is_about(result: Result, domain: str) -> bool:
    """A DMARC result for ``domain``, or a DKIM result signed by it (or a parent)."""
    if result.method == "dmarc":
        return value(result, "header.from") == domain
    if result.method == "dkim":
        signer = value(result, "header.d") or (value(result, "header.i") or "").rpartition("@")[2]
        return bool(signer) and (domain == signer or domain.endswith("." + signer))
    return False


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
            if not parsed.complete:  # what its cut end said is unknown: a fail may stand there
                raise NotAuthorised(f"an Authentication-Results field of {authserv_id} is too long to read")
            found.append(parsed)
            last = position
    return found
