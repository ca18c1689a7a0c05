"""Where the IMAP and SMTP adapters get an access token.

1. A token cached in this process and not near its expiry is used as is.
2. Else the sign-in's row: a token another worker fetched is reused.
3. Else this worker claims the refresh (one worker at a time, across
   processes), asks the provider, and saves what came back in one UPDATE —
   a rotated refresh token at once, so it is never lost. A worker that finds
   the claim taken waits for the other's result.

A token the server refused is never handed out again: ``access_token(...,
refused=token)`` fetches a fresh one (or takes one another worker fetched
since). After a refusal by the provider the sign-in waits before it asks
again (backoff with jitter; longer when a person must act), so a down
endpoint is not hammered and nothing else waits on it."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from leadtap.auth.cipher import TokenCipher
from leadtap.auth.endpoint import TokenEndpoint
from leadtap.core.config.oauth2 import OAuth2Config
from leadtap.core.errors import OAuth2Error, TokenKeyError
from leadtap.core.store import oauth_tokens
from leadtap.core.store.engine import Database, utcnow
from leadtap.core.store.leases import database_now

CLAIM_TTL = timedelta(minutes=5)  # longer than a token request may take (30 s a read at most, a few reads)
EARLY = timedelta(minutes=5)  # renew this long before expiry (a quarter of a short token's lifetime at most)
BACKOFF_FIRST, BACKOFF_MAX = 5.0, 300.0  # seconds between tries after the endpoint failed
ATTENTION_WAIT = 600.0  # seconds between tries while a person must act


@dataclass(frozen=True)
class SignIn:
    """One user of a token: a mailbox or SMTP, as ``username`` by ``config``."""

    name: str  # "mailbox sales", "smtp"
    username: str
    config: OAuth2Config
    login_command: str  # what a person runs to sign in again

    @property
    def credential(self) -> str:
        return self.config.credential(self.username)


@dataclass
class Cached:
    token: str
    expires_at: datetime
    refreshed_at: datetime


@dataclass(frozen=True)
class Read:
    """What a worker read before it claimed a refresh."""

    refresh_token: str | None
    signed_in_at: datetime | None


@dataclass
class Waiting:
    until: float  # monotonic
    failures: int
    error: OAuth2Error
    signed_in_at: datetime | None  # the sign-in the failure was about: a new one ends the wait


class TokenSource:
    def __init__(self, db: Database, cipher: Callable[[], TokenCipher], worker: str,
                 clock: Callable[[], datetime] = utcnow, endpoint=TokenEndpoint,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic):
        self.db, self._cipher, self.worker = db, cipher, worker
        self.clock, self.endpoint, self.sleep, self.monotonic = clock, endpoint, sleep, monotonic
        self.cache: dict[str, Cached] = {}
        self.spent: dict[str, str] = {}  # a token a server said has run out, never handed out again
        self.waiting: dict[str, Waiting] = {}
        self.locks: dict[str, threading.Lock] = {}
        self.guard = threading.Lock()
        self.cipher_made: TokenCipher | None = None

    @property
    def cipher(self) -> TokenCipher:
        if self.cipher_made is None:
            self.cipher_made = self._cipher()
        return self.cipher_made

    def access_token(self, sign_in: SignIn, refused: str | None = None) -> str:
        """A token to sign in with now; ``refused``: the one the server just
        turned down, never handed out again."""
        from sqlalchemy.exc import DBAPIError

        refused = refused or self.spent.get(sign_in.credential)
        with self.lock(sign_in.credential):
            cached = self.cache.get(sign_in.credential)
            if cached and cached.token != refused and not renewal_due(cached, self.clock()):
                return cached.token
            try:
                self.wait_out_backoff(sign_in)
                return self.from_row_or_provider(sign_in, refused)
            except DBAPIError as exc:  # the token's row cannot be read or written now: a later pass may
                raise OAuth2Error(f"{sign_in.name}: the database is unavailable for the sign-in's token: "
                                  f"{type(exc.orig).__name__ if exc.orig else type(exc).__name__}",
                                  attention=False, code="database") from None
            except TokenKeyError as exc:
                raise OAuth2Error(f"{sign_in.name}: {exc}", attention=True, code="token_key") from None

    def token_spent(self, sign_in: SignIn, token: str) -> None:
        """The server ended a session: its token ran out (sooner than it was said to)."""
        self.spent[sign_in.credential] = token

    def renew_at(self, sign_in: SignIn) -> datetime | None:
        """When the token last handed out for ``sign_in`` is due for renewal:
        an IMAP session signed in with it ends at its expiry on Exchange, so
        IDLE starts a new one before."""
        cached = self.cache.get(sign_in.credential)
        return cached.expires_at - early(cached) if cached else None

    def server_refused(self, sign_in: SignIn, detail: str) -> None:
        """A fresh token was refused by the mail server too: a person must act
        (a permission, a mailbox grant); the sign-in is marked so."""
        self.record_failure(sign_in, OAuth2Error(detail, attention=True, code="server_refused"))

    def lock(self, credential: str) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault(credential, threading.Lock())

    def wait_out_backoff(self, sign_in: SignIn) -> None:
        waiting = self.waiting.get(sign_in.credential)
        if waiting is None or self.monotonic() >= waiting.until:
            return
        if sign_in.config.interactive and self.signed_in_at(sign_in) != waiting.signed_in_at:
            self.waiting.pop(sign_in.credential, None)  # a person signed in again since: try at once
            return
        left = waiting.until - self.monotonic()
        raise OAuth2Error(f"{failure_text(sign_in, waiting.error)} (tried again in {left:.0f}s)",
                          attention=waiting.error.attention, code=waiting.error.code)

    def from_row_or_provider(self, sign_in: SignIn, refused: str | None) -> str:
        deadline = self.monotonic() + sign_in.config.timeout + 5
        while True:
            token, read = self.read_or_claim(sign_in, refused)
            if token is not None:
                return token
            if read is not None:
                return self.refresh(sign_in, read)
            if self.monotonic() >= deadline:
                raise OAuth2Error(f"{sign_in.name}: another worker has been fetching the token for "
                                  f"{sign_in.config.timeout + 5:g}s; tried again at the next pass",
                                  attention=False, code="busy")
            self.sleep(0.2)  # another worker is asking the provider: its answer will be in the row

    def read_or_claim(self, sign_in: SignIn, refused: str | None) -> tuple[str | None, Read | None]:
        """(a usable token from the row, or None; what this worker read and claimed the refresh on, or
        None when another worker holds the claim)."""
        credential = sign_in.credential
        with self.db.transaction() as session:
            now = database_now(session, self.clock)
            row = oauth_tokens.read(session, credential)
            skew = self.clock() - now  # the row's times are the database's; the cache keeps this worker's
            token = self.usable(row, credential, refused, now)
            if token is not None:
                self.cache[credential] = Cached(token, row.expires_at + skew, (row.refreshed_at or now) + skew)
                return token, None
            read = Read(self.refresh_token_of(sign_in, row), row.signed_in_at if row else None)
            # The claim holds only if the row is still the one read: a refresh saved in
            # between (another worker's, or a new sign-in) is used, never refreshed again
            # with a rotated or revoked token.
            claimed = oauth_tokens.claim_refresh(session, credential, sign_in.username, sign_in.config.grant,
                                                 self.worker, now, CLAIM_TTL, row.refreshes if row else None)
            return None, read if claimed else None

    def refresh_token_of(self, sign_in: SignIn, row) -> str | None:
        if row is not None and row.refresh_token:
            try:
                return self.cipher.open(row.refresh_token, sign_in.credential)
            except TokenKeyError as exc:
                raise TokenKeyError(f"{exc}: run {sign_in.login_command}") from None
        if sign_in.config.interactive:
            raise OAuth2Error(f"{sign_in.name}: not signed in yet; run: {sign_in.login_command}",
                              attention=True, code="not_signed_in")
        return None

    def signed_in_at(self, sign_in: SignIn) -> datetime | None:
        with self.db.transaction() as session:
            row = oauth_tokens.read(session, sign_in.credential)
        return row.signed_in_at if row else None

    def usable(self, row, credential: str, refused: str | None, now: datetime) -> str | None:
        if row is None or row.access_token is None or row.expires_at is None:
            return None
        try:
            token = self.cipher.open(row.access_token, credential)
        except TokenKeyError:  # stored under another key: a new one is fetched (a refresh token is another matter)
            return None
        cached = Cached(token, row.expires_at, row.refreshed_at or now)
        return token if token != refused and not renewal_due(cached, now) else None

    def refresh(self, sign_in: SignIn, read: Read) -> str:
        """Ask the provider (this worker holds the claim) and save the answer.

        1. The cipher is made first: a key that cannot be used stops here, before the provider is asked.
        2. The provider's refusal is recorded (by the claim's holder) and waited out.
        3. Its answer is saved at once, tried three times: a rotated refresh token must not be lost."""
        credential = sign_in.credential
        try:
            cipher = self.cipher
            grant = self.endpoint(sign_in.config, sign_in.username).fetch(read.refresh_token)
        except OAuth2Error as exc:
            self.record_failure(sign_in, exc, claimed=True, signed_in_at=read.signed_in_at)
            raise OAuth2Error(failure_text(sign_in, exc), attention=exc.attention, code=exc.code) from None
        except BaseException:
            self.release(credential)
            raise
        sealed = (cipher.seal(grant.access_token, credential),
                  cipher.seal(grant.refresh_token, credential) if grant.refresh_token else None)
        for attempt in range(3):
            try:
                with self.db.transaction() as session:
                    now = database_now(session, self.clock)
                    expires_at = now + timedelta(seconds=grant.expires_in)
                    oauth_tokens.save_tokens(session, credential, self.worker, sealed[0], expires_at, sealed[1], now,
                                             read.signed_in_at)
                    skew = self.clock() - now
                break
            except Exception:
                if attempt == 2:
                    raise
                self.sleep(0.5)
        self.cache[credential] = Cached(grant.access_token, expires_at + skew, now + skew)
        self.waiting.pop(credential, None)
        self.spent.pop(credential, None)
        return grant.access_token

    def release(self, credential: str) -> None:
        try:
            with self.db.transaction() as session:
                oauth_tokens.release(session, credential, self.worker)
        except Exception:  # the claim expires by itself
            pass

    def record_failure(self, sign_in: SignIn, exc: OAuth2Error, claimed: bool = False,
                       signed_in_at: datetime | None = None) -> None:
        """Kept in the row (by the claim's holder only, when it was a refresh), and waited out here;
        ``signed_in_at``: the sign-in the refused token came from (a newer one ends the wait)."""
        with self.db.transaction() as session:
            oauth_tokens.record_refusal(session, sign_in.credential, failure_text(sign_in, exc), exc.attention,
                                        database_now(session, self.clock), worker=self.worker if claimed else None)
        earlier = self.waiting.get(sign_in.credential)
        failures = (earlier.failures if earlier else 0) + 1
        pause = ATTENTION_WAIT if exc.attention else min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (failures - 1))
        pause *= random.uniform(0.8, 1.2)  # several workers do not come back at once
        seen = signed_in_at if claimed else self.signed_in_at(sign_in)
        self.waiting[sign_in.credential] = Waiting(self.monotonic() + pause, failures, exc, seen)
        self.cache.pop(sign_in.credential, None)


def renewal_due(cached: Cached, now: datetime) -> bool:
    return now >= cached.expires_at - early(cached)


def early(cached: Cached) -> timedelta:
    """How long before its expiry a token is renewed: 5 minutes, or a quarter of a short token's lifetime."""
    return min(EARLY, (cached.expires_at - cached.refreshed_at) / 4)


def failure_text(sign_in: SignIn, exc: OAuth2Error) -> str:
    """The refusal, and what fixes it when a person must act."""
    text = f"{sign_in.name}: OAuth2 sign-in as {sign_in.username!r} failed: {exc}"
    if exc.code == "not_signed_in" or str(exc).startswith(sign_in.name):
        return str(exc)
    if exc.attention and sign_in.config.interactive and exc.code in ("invalid_grant", "interaction_required",
                                                                     "consent_required"):
        return f"{text}; run: {sign_in.login_command}"
    return text


class BoundTokens:
    """The tokens of one sign-in, as the IMAP and SMTP adapters use them."""

    def __init__(self, source: TokenSource, sign_in: SignIn):
        self.source, self.sign_in = source, sign_in

    @property
    def mechanism(self) -> str:
        return self.sign_in.config.mechanism

    def token(self, refused: str | None = None) -> str:
        return self.source.access_token(self.sign_in, refused)

    def refused(self, detail: str) -> None:
        self.source.server_refused(self.sign_in, detail)

    def renew_at(self) -> datetime | None:
        return self.source.renew_at(self.sign_in)

    def spent(self, token: str) -> None:
        self.source.token_spent(self.sign_in, token)


def sasl_xoauth2(username: str, token: str) -> str:
    """The XOAUTH2 initial response (Google's and Microsoft's SASL mechanism)."""
    return f"user={username}\x01auth=Bearer {token}\x01\x01"


def sasl_oauthbearer(username: str, token: str, host: str, port: int) -> str:
    """RFC 7628's OAUTHBEARER initial response; the user name is escaped as RFC 5801's gs2 header asks."""
    escaped = username.replace("=", "=3D").replace(",", "=2C")
    return f"n,a={escaped},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
