"""The SMTP adapter: one connection reused across a sweep, reconnecting once
when the server dropped it. Every smtplib, socket and TLS error leaves this
module as ``MailSendError``; ``permanent`` says whether trying again can help
(a 5xx answer) or not."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from email.message import Message
from typing import Callable

from leadtap.core.config.load import SmtpConfig
from leadtap.core.errors import ConfigError, MailSendError, OAuth2Error


def answer_text(answer: bytes | str) -> str:
    return answer.decode(errors="replace") if isinstance(answer, bytes) else answer


def all_permanent(refused: dict) -> bool:
    """A refusal is for good only when every recipient got a 5xx (a 4xx —
    greylisting, a full mailbox, a rate limit — may pass)."""
    return all(code >= 500 for code, _ in refused.values())


class Dropped(Exception):
    """The server closed the connection; one reconnect is worth trying."""


class Outage:
    """Whether sending fails for every email — the server, or our sign-in —
    so that it is said once an outage (its first failure, then its end), not
    by every sweep that has mail: one per process, shared by every sender."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.since: float | None = None
        self.clock = clock
        self.lock = threading.Lock()

    def begins(self) -> bool:
        """A failure for every email: True when it starts an outage (to be said)."""
        with self.lock:
            if self.since is not None:
                return False
            self.since = self.clock()
            return True

    def ends(self) -> float | None:
        """An email went out: how long the outage lasted (seconds) when this ends one, else None."""
        with self.lock:
            if self.since is None:
                return None
            lasted, self.since = self.clock() - self.since, None
            return lasted


class SmtpMailer:
    def __init__(self, config: SmtpConfig, tokens=None, outage: Outage | None = None):
        """``tokens``: where ``auth = "oauth2"`` gets its access token
        (leadtap.auth.tokens.BoundTokens); ``outage``: the process's."""
        self.config = config
        self.tokens = tokens
        self.outage = outage or Outage()
        self.client: smtplib.SMTP | None = None

    def __enter__(self) -> "SmtpMailer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, message: Message) -> None:
        """Send one message; reconnect once if the server had dropped us."""
        try:
            self._send(message)
        except Dropped:
            self.close()
            try:
                self._send(message)
            except Dropped as exc:
                raise MailSendError(f"{self.where()}: the server closed the connection ({exc})",
                                    permanent=False) from None

    def _send(self, message: Message) -> None:
        if self.client is None:
            self.client = self.open()
        try:
            refused = self.client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise MailSendError(self.describe("refused every recipient", exc.recipients),
                                permanent=all_permanent(exc.recipients)) from None
        except smtplib.SMTPDataError as exc:  # the server refused this message's content
            self.raise_answer(exc, permanent=exc.smtp_code >= 500, sweep_wide=False)
        except smtplib.SMTPResponseException as exc:  # MAIL FROM, authentication: our setup, not this letter
            self.raise_answer(exc, permanent=False, sweep_wide=True)
        except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            raise Dropped(str(exc) or type(exc).__name__) from None
        except (OSError, smtplib.SMTPException) as exc:
            self.close()
            raise MailSendError(self.failure(exc), permanent=False, sweep_wide=True,
                                timed_out=isinstance(exc, socket.timeout)) from None
        if refused:
            raise MailSendError(self.describe("refused some recipients", refused), permanent=all_permanent(refused))

    def raise_answer(self, exc: smtplib.SMTPResponseException, permanent: bool, sweep_wide: bool):
        text = answer_text(exc.smtp_error)
        if exc.smtp_code == 421:  # "closing the connection": a new one may do
            raise Dropped(f"421 {text}") from None
        raise MailSendError(f"{self.where()}: {exc.smtp_code} {text}", permanent=permanent,
                            sweep_wide=sweep_wide) from None

    def open(self) -> smtplib.SMTP:
        """Connect and log in; any failure is the whole sweep's, never a letter's."""
        try:
            return self.connect()
        except (ConfigError, OAuth2Error) as exc:  # no password or token: nothing can be sent now
            raise MailSendError(f"{self.where()}: {exc}" if isinstance(exc, OAuth2Error) else str(exc),
                                permanent=False, sweep_wide=True) from None
        except smtplib.SMTPAuthenticationError as exc:
            text = answer_text(exc.smtp_error)
            raise MailSendError(f"{self.where()}: login refused for {self.config.username!r}: {exc.smtp_code} {text}",
                                permanent=False, sweep_wide=True) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise MailSendError(self.failure(exc), permanent=False, sweep_wide=True) from None

    def failure(self, exc: BaseException) -> str:
        if isinstance(exc, socket.timeout):
            return f"{self.where()}: timed out after {self.config.timeout:g}s"
        if isinstance(exc, ssl.SSLError):
            return f"{self.where()}: TLS failed: {exc.reason or exc}"
        return f"{self.where()}: {exc}"

    def connect(self) -> smtplib.SMTP:
        config = self.config
        password = config.password.reveal() if config.password else ""  # a ConfigError before any connection
        context = ssl.create_default_context(cafile=config.ca_file)
        if config.security == "tls":
            client = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout, context=context)
        else:
            client = smtplib.SMTP(config.host, config.port, timeout=config.timeout)
            if config.security == "starttls":
                client.starttls(context=context)
        if config.oauth2 is not None:
            self.sign_in(client)
        elif config.username:
            client.login(config.username, password)
        return client

    def sign_in(self, client: smtplib.SMTP) -> None:
        """AUTH XOAUTH2 (or OAUTHBEARER) with an access token; a token refused
        is tried once more, freshly fetched; a second refusal puts the
        sign-in in "needs attention"."""
        token = self.tokens.token()
        try:
            self.authenticate(client, token)
        except smtplib.SMTPAuthenticationError as exc:
            if exc.smtp_code < 500:  # 454: the server cannot check the token now, not a refusal of it
                raise
            token = self.tokens.token(refused=token)
            try:
                self.authenticate(client, token)
            except smtplib.SMTPAuthenticationError as exc:
                if exc.smtp_code < 500:
                    raise
                detail = (f"{self.where()}: login refused for {self.config.username!r}: {exc.smtp_code} "
                          f"{answer_text(exc.smtp_error)}")
                self.tokens.refused(detail)
                raise

    def authenticate(self, client: smtplib.SMTP, token: str) -> None:
        from leadtap.auth.tokens import sasl_oauthbearer, sasl_xoauth2

        config = self.config
        if self.tokens.mechanism == "oauthbearer":
            first, mechanism = sasl_oauthbearer(config.username, token, config.host, config.port), "OAUTHBEARER"
        else:
            first, mechanism = sasl_xoauth2(config.username, token), "XOAUTH2"
        answers = iter([first])
        client.ehlo_or_helo_if_needed()
        # The first answer is the token; a 334 challenge after it is the
        # server's error report, answered empty (RFC 7628 3.2.3) to get its 535.
        client.auth(mechanism, lambda challenge=None: next(answers, "" if mechanism == "XOAUTH2" else "\x01"),
                    initial_response_ok=True)

    def close(self) -> None:
        if self.client is None:
            return
        try:
            self.client.quit()
        except Exception:  # closing a broken connection: nothing left to save
            try:
                self.client.close()
            except Exception:
                pass
        self.client = None

    def where(self) -> str:
        return f"SMTP {self.config.host}:{self.config.port}"

    def describe(self, what: str, recipients: dict) -> str:
        answers = "; ".join(
            f"{address}: {code} {answer_text(text)}"
            for address, (code, text) in recipients.items()
        )
        return f"{self.where()} {what}: {answers}"
