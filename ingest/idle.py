"""Push: a connection that waits in IMAP IDLE (RFC 2177) on one mailbox's
folder and says when the server reports new mail, so that the mailbox is
polled at once rather than at its next interval.

- IDLE is renewed every ``RENEW`` (well within RFC 2177's 29 minutes), with a
  NOOP between: a connection that died silently shows there; TCP keepalives
  notice a peer that vanished within about ninety seconds.
- A lost connection (a server restart, a silent drop) is reopened with
  backoff and jitter (1 s doubling to a minute), logged once per outage and
  once when it is back.
- A server that does not announce IDLE: logged once, and the mailbox is
  polled as before (``idle`` left out of the config); ``idle = true`` asked
  for it, so that is a warning.
- The watch only waits; the pass itself is the ordinary one.
"""

from __future__ import annotations

import random
import select
import socket
import time
from contextlib import suppress
from datetime import datetime, timezone
from typing import Callable

from leadtap.core.config.load import MailboxConfig
from leadtap.core.errors import ConfigError, ImapError
from leadtap.ingest.imap import ImapMailbox, Tokens, token_expired, translated_errors
from leadtap.core.logs import get_logger

RENEW = 2 * 60  # seconds in IDLE before it is renewed: within RFC 2177's 29 minutes and most proxies' idle timeouts
STEADY = 60  # seconds a connection must last before an outage counts as over
TOKEN_FLOOR = 1  # second an IDLE session lasts at least, whatever its OAuth2 token's renewal says
EXPIRIES = 3  # sessions ended by their token's expiry within STEADY, taken as reconnects; more is an outage
CHECK_EVERY = 1.0  # seconds: how soon a stop is seen
FIRST_RETRY, LAST_RETRY = 1.0, 60.0


def backoff(failures: int, rng: random.Random = random.Random()) -> float:
    """1, 2, 4 … 60 seconds, ±20 %: workers that lost one server do not all knock again at once."""
    return min(FIRST_RETRY * 2 ** (failures - 1), LAST_RETRY) * rng.uniform(0.8, 1.2)


def keep_alive(sock: socket.socket) -> None:
    """TCP keepalives: a peer that vanished without a word is noticed in about 90 s."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def readable(sock: socket.socket) -> bool:
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):  # closed under us
        return True


def is_new_mail(response: tuple) -> bool:
    return len(response) >= 2 and response[1] in (b"EXISTS", b"RECENT")


class MailboxWatcher:
    def __init__(self, box: MailboxConfig, timeout: float, on_new_mail: Callable[[], None],
                 should_stop: Callable[[], bool], may_watch: Callable[[], bool] = lambda: True,
                 wait: Callable[[float], None] = time.sleep, on_state: Callable[[bool], None] = lambda _: None,
                 tokens: Tokens | None = None):
        """``may_watch``: False while another worker serves the mailbox; ``wait``: sleeps, or returns at a
        stop; ``on_state``: told when the IDLE connection comes up (True) and goes (False)."""
        self.box, self.timeout = box, timeout
        self.on_new_mail, self.should_stop, self.may_watch, self.wait = on_new_mail, should_stop, may_watch, wait
        self.on_state, self.tokens = on_state, tokens
        self.log = get_logger("leadtap.idle").bind(mailbox=box.name)

    def run(self) -> None:
        """Watch until stopped; returns early when the server has no IDLE."""
        failures, started, expiries = 0, False, []
        while not self.should_stop():
            if not self.watching_allowed():
                self.wait(self.box.poll_interval.total_seconds())
                continue
            connected_at, imap = None, ImapMailbox(self.box, self.timeout, readonly=True, tokens=self.tokens)
            try:
                with imap:
                    if not imap.announces("IDLE"):
                        self.no_idle()
                        return
                    keep_alive(imap.client.socket())
                    connected_at = time.monotonic()
                    if failures:
                        self.log.info("idle_restored", after_failures=failures)
                    elif not started:
                        self.log.info("idle_started")
                    started = True
                    self.on_new_mail()  # whatever came before the folder was watched
                    self.on_state(True)
                    try:
                        self.watch(imap)
                    finally:
                        self.on_state(False)
            except (ImapError, ConfigError) as exc:
                expiries = [t for t in expiries if time.monotonic() - t < STEADY]
                if (token_expired(exc) and connected_at is not None and time.monotonic() - connected_at >= 2
                        and len(expiries) < EXPIRIES):
                    # Exchange ends a session when its token runs out: a reconnect with a fresh one, not an
                    # outage (unless fresh tokens are cut again and again: then it is one, with backoff)
                    expiries.append(time.monotonic())
                    imap.token_spent()
                    self.log.info("idle_token_expired", detail="reconnecting with a fresh token")
                    continue
                if connected_at is not None and time.monotonic() - connected_at >= STEADY:
                    failures = 0  # it had been up a good while: this is a new outage
                failures += 1
                if failures == 1:  # once per outage
                    self.log.warning("idle_lost", error=str(exc), detail="reconnecting with backoff; polls go on")
                self.wait(backoff(failures))
            else:
                failures = 0

    def watching_allowed(self) -> bool:
        """``may_watch`` asks the database; while it cannot answer, do not watch (the polls go on)."""
        try:
            return self.may_watch()
        except Exception as exc:
            self.log.warning("idle_paused", error=f"{type(exc).__name__}: {exc}")
            return False

    def watch(self, imap: ImapMailbox) -> None:
        client = imap.client
        while not self.should_stop() and self.watching_allowed():
            with translated_errors(self.box, "waiting in IDLE"):
                client.idle()
                try:
                    renewing = self.wait_in_idle(client)
                except BaseException:
                    with suppress(Exception):  # the connection may be gone: the first error is the one that tells
                        client.idle_done()
                    raise
                _, responses = client.idle_done()
                self.notice(responses)
                if renewing:  # the sign-in's token is about to run out: a new session with a fresh one
                    return
                _, responses = client.noop()  # a connection that died silently shows here
                self.notice(responses)

    def notice(self, responses) -> None:
        if any(is_new_mail(r) for r in responses or ()):
            self.on_new_mail()

    def wait_in_idle(self, client) -> bool:
        """Until the renewal (or a stop): new mail wakes the mailbox. imapclient's
        ``idle_check`` swallows the end of the connection (it returns nothing,
        at once, again and again), so an empty answer on a socket that stays
        readable is taken for what it is: the server is gone. True: it ended
        because the OAuth2 token is about to run out."""
        token_left = self.token_seconds_left()
        if token_left is not None:
            token_left = max(token_left, TOKEN_FLOOR)  # never a session a second: a fresh token comes on reconnect
        renew_at = time.monotonic() + min(RENEW, token_left if token_left is not None else RENEW)
        empty_but_readable = 0
        while not self.should_stop() and time.monotonic() < renew_at:
            responses = client.idle_check(timeout=CHECK_EVERY)
            self.notice(responses)
            ended = [r for r in responses or () if r and r[0] == b"BYE"]
            if ended:  # the server's last word before it closes (Exchange: "... AccessTokenExpired")
                raise ImapError(f"mailbox {self.box.name!r} ({self.box.host}:{self.box.port}): the server ended "
                                f"the session: {b' '.join(x for x in ended[0][1:] if isinstance(x, bytes)).decode(errors='replace')}")
            empty_but_readable = empty_but_readable + 1 if not responses and readable(client.socket()) else 0
            if empty_but_readable >= 3:
                raise ImapError(f"mailbox {self.box.name!r} ({self.box.host}:{self.box.port}): "
                                "the server closed the connection")
        return token_left is not None and token_left < RENEW and not self.should_stop()

    def token_seconds_left(self) -> float | None:
        """Seconds until the sign-in's token is due for renewal (None: no OAuth2, or not known)."""
        renew_at = self.tokens.renew_at() if self.tokens is not None else None
        if renew_at is None:
            return None
        return max((renew_at - datetime.now(timezone.utc)).total_seconds(), 0.0)

    def no_idle(self) -> None:
        if self.box.idle:
            self.log.warning("idle_unsupported", detail="the server does not announce IDLE; the mailbox is polled")
        else:
            self.log.info("idle_unsupported", detail="the server does not announce IDLE; the mailbox is polled")
