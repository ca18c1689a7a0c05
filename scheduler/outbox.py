"""One email sent, the same way for every sender (the reminder sweep, the
notifications): built, handed to the SMTP adapter, and its failure turned
into data — ``MailSendError(permanent=…)`` — never raised, so one bad email
never ends a run. Every email says so in the log: ``<event>_sent``,
``<event>_failed`` (the server's answer), ``<event>_not_sent`` (a template
broken since ``check``, or a bug: with its traceback, tried again later)."""

from __future__ import annotations

from email.message import Message
from typing import Callable

from leadtap.core.errors import MailSendError
from leadtap.scheduler.mailer import SmtpMailer


def send_one(mailer: SmtpMailer, log, event: str, make_email: Callable[[], Message], **about) -> MailSendError | None:
    """None when sent, else why not; ``event``: the log lines' stem
    (``reminder``, ``notification``); ``about``: the ids they carry."""
    try:
        mailer.send(make_email())
    except MailSendError as error:
        log.error(f"{event}_failed", error=str(error), permanent=error.permanent, **about)
        return error
    except Exception as exc:  # a template broken since `check`, or a bug: tried again later
        log.exception(f"{event}_not_sent", **about)
        return MailSendError(f"{type(exc).__name__}: {exc}", permanent=False)
    log.info(f"{event}_sent", **about)
    return None
