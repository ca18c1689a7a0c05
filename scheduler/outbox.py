"""One email sent, the same way for every sender (the reminder sweep, the
notifications): built, handed to the SMTP adapter, and its failure turned
into data — ``MailSendError(permanent=…)`` — never raised, so one bad email
never ends a run. Every email says so in the log: ``<event>_sent``,
``<event>_failed`` (the server's answer), ``<event>_not_sent`` (a template
broken since ``check``, or a bug: with its traceback, tried again later).
A failure for every email (the server down, our sign-in refused) is an
error once an outage (``mailer.Outage``), then ``smtp_back`` when one goes out."""

from __future__ import annotations

import time
from datetime import datetime
from email.message import Message
from typing import Callable, Sequence

from leadtap.core.errors import MailSendError
from leadtap.core.store.outbox import Outbox, send_until
from leadtap.scheduler.mailer import SmtpMailer


def send_one(mailer: SmtpMailer, log, event: str, make_email: Callable[[], Message], **about) -> MailSendError | None:
    """None when sent, else why not; ``event``: the log lines' stem
    (``reminder``, ``notification``); ``about``: the ids they carry."""
    try:
        mailer.send(make_email())
    except MailSendError as error:
        if error.sweep_wide and not mailer.outage.begins():  # said when the outage began
            log.debug(f"{event}_failed", error=str(error), **about)
        else:
            log.error(f"{event}_failed", error=str(error), permanent=error.permanent, **about,
                      **({"detail": "said once until an email goes out again"} if error.sweep_wide else {}))
        return error
    except Exception as exc:  # a template broken since `check`, or a bug: tried again later
        log.exception(f"{event}_not_sent", **about)
        return MailSendError(f"{type(exc).__name__}: {exc}", permanent=False)
    lasted = mailer.outage.ends()
    if lasted is not None:
        log.warning("smtp_back", detail=f"emails go out again after {lasted:.0f} s of failing")
    log.info(f"{event}_sent", **about)
    return None


def claim_due(db, outbox: Outbox, now: datetime, token: str, limit: int) -> list[int]:
    """The rows due now that this sender (``token``) won, in id order (two senders never deadlock)."""
    with db.transaction() as session:
        ids = outbox.due_ids(session, now, limit)
    if not ids:
        return []
    with db.transaction() as session:
        if hasattr(outbox, "claim_many"):  # one statement for the batch
            return outbox.claim_many(session, ids, token, now)
        return [row_id for row_id in ids if outbox.claim(session, row_id, token, now)]


def send_each(mailer_factory, items: Sequence, send: Callable[[SmtpMailer, object], bool],
              should_stop: Callable[[], bool], release: Callable[[list], None], deadline: float | None = None) -> None:
    """``send`` each item over one connection, in order, while the claims'
    lease allows (``send_until``); it answers False when the rest should wait
    (the server or our login). What was not tried is released. ``deadline``:
    the claims' (from when they were taken), else from now."""
    left = list(items)
    deadline = send_until() if deadline is None else deadline
    try:
        with mailer_factory() as mailer:
            while left and not should_stop() and time.monotonic() <= deadline:
                if not send(mailer, left.pop(0)):
                    break
    finally:
        release(left)
