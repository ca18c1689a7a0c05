"""The OAuth2 token rows: read, claim a refresh, save what it brought, record
a refusal, forget. The tokens arrive here already encrypted (the adapter holds
the key); times are the database's on PostgreSQL, so workers agree on who
holds a refresh claim.

A refresh is claimed with a conditional UPDATE (or the row's first INSERT),
so one worker at a time asks the provider; the others wait for its result
and reuse it. The claim expires by itself: a worker that dies mid-refresh
holds it for ``ttl`` at most, and its half-done work never reaches the row
(the new tokens are written in one UPDATE)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from leadtap.core.store.db import OAuthToken


@dataclass(frozen=True)
class TokenRow:
    """What a sign-in's row holds (tokens still encrypted)."""

    credential: str
    username: str
    grant_type: str
    refresh_token: bytes | None
    access_token: bytes | None
    expires_at: datetime | None
    refreshed_at: datetime | None
    refreshes: int
    claimed_by: str | None
    claimed_until: datetime | None
    error: str | None
    error_at: datetime | None
    attention: bool
    signed_in_at: datetime | None


def row_of(token: OAuthToken) -> TokenRow:
    return TokenRow(token.credential, token.username, token.grant_type, token.refresh_token, token.access_token,
                    token.expires_at, token.refreshed_at, token.refreshes, token.claimed_by, token.claimed_until,
                    token.error, token.error_at, token.attention, token.signed_in_at)


def read(session: Session, credential: str) -> TokenRow | None:
    token = session.get(OAuthToken, credential, populate_existing=True)
    return row_of(token) if token is not None else None


def all_rows(session: Session) -> list[TokenRow]:
    return [row_of(t) for t in session.scalars(select(OAuthToken).order_by(OAuthToken.username))]


def claim_refresh(session: Session, credential: str, username: str, grant_type: str, worker: str,
                  now: datetime, ttl: timedelta, refreshes_seen: int | None) -> bool:
    """This worker may ask the provider for a new token now: the row's claim
    was free (or expired) and the row is still as read (``refreshes_seen``
    refreshes: none saved since), or there was no row (None). False: another
    worker is at it, or has just saved one; read the row again."""
    if refreshes_seen is not None:
        claimed = session.execute(
            update(OAuthToken)
            .where(OAuthToken.credential == credential, OAuthToken.refreshes == refreshes_seen,
                   or_(OAuthToken.claimed_until.is_(None), OAuthToken.claimed_until <= now))
            .values(claimed_by=worker, claimed_until=now + ttl)
        )
        return claimed.rowcount == 1
    try:
        with session.begin_nested():
            session.add(OAuthToken(credential=credential, username=username, grant_type=grant_type,
                                   claimed_by=worker, claimed_until=now + ttl, refreshes=0, attention=False))
        return True
    except IntegrityError:  # the row is there and its claim is another worker's
        return False


def save_tokens(session: Session, credential: str, worker: str, access_token: bytes, expires_at: datetime,
                refresh_token: bytes | None, now: datetime, signed_in_at: datetime | None) -> None:
    """The provider's answer, in one UPDATE: the access token, its expiry and
    (when it rotated) the new refresh token; the claim and any refusal end.
    Saved whoever holds the claim now: a rotated refresh token the provider
    has handed out must not be lost (the claim outlives the request: the
    endpoint's timeout is capped below it) — unless a person signed in
    again meanwhile (``signed_in_at`` is no longer the one read): their new
    grant wins."""
    values = dict(access_token=access_token, expires_at=expires_at, refreshed_at=now,
                  refreshes=OAuthToken.refreshes + 1, claimed_by=None, claimed_until=None, error=None,
                  error_at=None, attention=False)
    if refresh_token is not None:
        values["refresh_token"] = refresh_token
    session.execute(update(OAuthToken).where(OAuthToken.credential == credential,
                                             OAuthToken.signed_in_at.is_not_distinct_from(signed_in_at))
                    .values(**values))


def record_refusal(session: Session, credential: str, error: str, attention: bool, now: datetime,
                   worker: str | None = None) -> None:
    """The provider (or the mail server) refused: kept for `auth status` and
    `check`; the claim ends. ``attention``: a person must act, and the access
    token is dropped (it will not be trusted again). ``worker``: a refused
    refresh, recorded only while this worker holds the claim (one that lost
    it must not undo another's newer result)."""
    values = dict(error=error, error_at=now, attention=attention)
    if attention:
        values.update(access_token=None, expires_at=None)
    query = update(OAuthToken).where(OAuthToken.credential == credential)
    if worker is not None:
        query = query.where(OAuthToken.claimed_by == worker)
        values.update(claimed_by=None, claimed_until=None)
    session.execute(query.values(**values))


def release(session: Session, credential: str, worker: str) -> None:
    session.execute(update(OAuthToken).where(OAuthToken.credential == credential, OAuthToken.claimed_by == worker)
                    .values(claimed_by=None, claimed_until=None))


def sign_in(session: Session, credential: str, username: str, grant_type: str, refresh_token: bytes,
            access_token: bytes | None, expires_at: datetime | None, now: datetime) -> None:
    """A person signed in (`auth login`): the row starts over with their grant.
    Its refresh count goes on (never back to one a worker may have read), so a
    claim made on the old row cannot land on the new one."""
    earlier = session.scalar(select(OAuthToken.refreshes).where(OAuthToken.credential == credential))
    refreshes = earlier + 1 if earlier is not None else 0
    session.execute(delete(OAuthToken).where(OAuthToken.credential == credential))
    session.add(OAuthToken(credential=credential, username=username, grant_type=grant_type,
                           refresh_token=refresh_token, access_token=access_token, expires_at=expires_at,
                           refreshed_at=now if access_token else None, refreshes=refreshes, attention=False,
                           signed_in_at=now))


def forget(session: Session, credential: str) -> bool:
    return session.execute(delete(OAuthToken).where(OAuthToken.credential == credential)).rowcount > 0
