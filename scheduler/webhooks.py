"""Delivering the webhook events owed (``core.use_cases.webhooks``): claimed
once across workers, each POSTed with its Standard Webhooks headers (the
same ``webhook-id`` on every retry, a fresh timestamp and signature), the
answer recorded:

- a 2xx: delivered;
- 410 Gone: the endpoint is disabled (until its URL changes), its events
  given up, said in the log;
- anything else — another status, a timeout, no connection, a redirect
  (never followed) — tried again after a backoff with jitter (1 minute,
  doubling, at most an hour) until ``horizon`` after the event, then failed
  with the last answer.

A lead's events to one endpoint go out in order: after one fails, the later
ones claimed with it are released untried. The response body is read up to
``MAX_ANSWER`` bytes; the secret is never logged.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import bindparam, func, update

from leadtap.core.config.load import Config
from leadtap.core.logs import get_logger
from leadtap.core.rules.webhooks import formatted, secret_bytes, signature
from leadtap.core.store.db import WebhookDelivery, WebhookEndpoint
from leadtap.core.store.engine import Database, utcnow
from leadtap.core.store.outbox import send_until
from leadtap.core.use_cases.webhooks import OUTBOX
from leadtap.scheduler.outbox import claim_due

BATCH = 200
MAX_ANSWER = 4096  # bytes of a receiver's answer kept (and read)
RECORD_EVERY = 50  # deliveries recorded in one transaction


@dataclass(frozen=True)
class Answer:
    """What a POST came to: an HTTP status (None: none came) and what was said."""

    status: int | None
    said: str

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.said}" if self.status is not None else self.said


def post(url: str, body: bytes, headers: dict[str, str], timeout: float, session=None,
         ca_file: str | None = None) -> Answer:
    """One POST (over ``session``'s kept-alive connections, when given), never
    following a redirect, within ``timeout`` in all — connecting, sending,
    the answer's head (urllib3's total) and its body, read until the time is
    up — and every failure an Answer, never raised."""
    import requests
    from urllib3.util import Timeout

    started = time.monotonic()
    try:
        with (session or plain_session()).post(url, data=body, headers=headers, timeout=Timeout(total=timeout),
                                               allow_redirects=False, stream=True,
                                               verify=ca_file or True) as response:
            said = read_answer(response.raw, started + timeout)
            if 300 <= response.status_code < 400:
                said = f"a redirect to {response.headers.get('Location', '?')} (not followed)"
            return Answer(response.status_code, printable(said))
    except requests.Timeout:
        return Answer(None, f"no answer within {timeout:g} s")
    except Exception as exc:  # requests' errors, and urllib3's while the body is read
        return Answer(None, printable(f"{type(exc).__name__}: {exc}"))


def read_answer(raw, deadline: float) -> str:
    """The answer's body, up to ``MAX_ANSWER`` bytes, no later than ``deadline`` (a receiver may dribble it)."""
    chunks, size = [], 0
    while size < MAX_ANSWER and time.monotonic() < deadline:
        chunk = raw.read1(min(1024, MAX_ANSWER - size), decode_content=True)  # what has come, not all asked
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode("utf-8", "replace").strip()


def printable(text: str) -> str:
    """A receiver's words as a terminal and a log may show them: no control character, 500 at most."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f]+", " ", text)[:500]


def plain_session():
    """A session that takes no proxy, .netrc or CA bundle from the environment: http:// stays on this machine."""
    import requests

    session = requests.Session()
    session.trust_env = False
    return session


def head(url: str, timeout: float, ca_file: str | None = None) -> Answer:
    """A HEAD request, as ``leadtap check`` reaches an endpoint; never raised."""
    import requests

    try:
        response = plain_session().head(url, timeout=timeout, allow_redirects=False, verify=ca_file or True)
        return Answer(response.status_code, "")
    except requests.RequestException as exc:
        return Answer(None, f"{type(exc).__name__}: {exc}"[:500])


def ping(app, hook) -> tuple[str, str]:
    """A signed ``ping`` owed to ``hook`` and sent now: its state and the answer."""
    from leadtap.core.rules.webhooks import payload
    from leadtap.core.use_cases.webhooks import encoded, row

    now = utcnow()
    with app.ready_database().transaction() as session:
        ping_row = WebhookDelivery(**row(hook, "ping", None, encoded(payload("ping", now, {}, {"by": "cli"})), now))
        session.add(ping_row)
        session.flush()
        ping_id = ping_row.id
    app.webhook_sender(only=[ping_id]).run()
    with app.db.transaction() as session:
        sent = session.get(WebhookDelivery, ping_id)
        if sent.state != "sent":  # said now, not tried again for days
            sent.state = "dropped" if sent.state == "pending" else sent.state
        return sent.state, sent.answer or sent.last_error or ""


@dataclass
class WebhookReport:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    gone: int = 0
    attempts: list = field(default_factory=list)  # (endpoint, outcome, seconds or None), for the metrics
    oldest_waiting: float = 0.0  # seconds since the oldest event still owed was made

    def summary(self) -> str:
        return (f"webhooks: {self.sent} delivered, {self.retry} to retry, {self.failed} given up, "
                f"{self.gone} endpoints gone")

    @property
    def anything(self) -> bool:
        return bool(self.sent or self.retry or self.failed or self.gone)


class WebhookSender:
    def __init__(self, config: Config, db: Database, clock: Callable[[], datetime] = utcnow,
                 should_stop: Callable[[], bool] = lambda: False, send: Callable[..., Answer] = post,
                 rng: random.Random | None = None, only: list[int] | None = None):
        self.config, self.db, self.clock, self.should_stop, self.send = config, db, clock, should_stop, send
        self.hooks = {hook.name: hook for hook in config.webhooks}
        self.rng = rng or random.Random()
        self.log = get_logger("leadtap.webhooks")
        self.gone_now: set[str] = set()  # endpoints that answered 410 in this run
        self.http = None  # a requests.Session while a batch is delivered
        self.only = only  # these rows, if due (a ping): nothing else
        self.delivered: list[tuple[int, str]] = []  # (row, answer) delivered, not yet recorded

    def run(self) -> WebhookReport:
        report = WebhookReport()
        if not self.hooks:
            return report
        now = self.clock()
        token = uuid.uuid4().hex
        if self.only is not None:
            with self.db.transaction() as session:
                mine = [row_id for row_id in self.only if OUTBOX.claim(session, row_id, token, now)]
        else:
            mine = claim_due(self.db, OUTBOX, now, token, BATCH)
        if not mine:
            report.oldest_waiting = self.oldest_waiting(now)
            return report
        self.http = plain_session()  # one connection per endpoint for the whole batch
        try:
            self.deliver_all(mine, token, now, report, send_until())
        finally:
            self.record_delivered(token, now)
            self.http.close()
            self.http = None
        report.oldest_waiting = self.oldest_waiting(now)
        return report

    def deliver_all(self, mine: list[int], token: str, now: datetime, report: WebhookReport,
                    deadline: float) -> None:
        """In claim order; an endpoint that fails once in a run gets nothing
        more in it (its rows released untried: one slow or down endpoint costs
        one timeout a run, not one a lead); nothing is sent past half the
        claims' lease, so no other worker takes over a row being sent."""
        with self.db.transaction() as session:
            rows = {row.id: row for row in session.query(WebhookDelivery).filter(WebhookDelivery.id.in_(mine))}
            self.gone_now |= {e.name for e in session.query(WebhookEndpoint)
                              if e.name in self.hooks and e.url == self.hooks[e.name].url}
        troubled: set[str] = set()  # endpoints that failed in this run
        untried: list[int] = []  # released together at the end: pending again, no attempt counted
        for row_id in mine:
            row = rows[row_id]
            if row.endpoint in self.gone_now:
                self.finish(row, token, now, "failed", "the endpoint answered 410 Gone: it is disabled")
                report.failed += 1
                continue
            if self.should_stop() or row.endpoint in troubled or time.monotonic() > deadline:
                untried.append(row_id)
                continue
            try:
                delivered = self.deliver(row, token, now, report)
            except Exception as exc:  # a bug, or this event's data: retried later, alone; the rest go on
                self.log.exception("webhook_not_sent", row=row.id)
                given_up = self.retry(row, self.hooks[row.endpoint].horizon if row.endpoint in self.hooks
                                      else timedelta(0), token, now, Answer(None, f"{type(exc).__name__}: {exc}"))
                report.failed += given_up
                report.retry += not given_up
                delivered = False
            if not delivered:
                troubled.add(row.endpoint)
            if len(self.delivered) >= RECORD_EVERY:  # out of the row's own handling: a failed record is no retry of it
                self.record_delivered(token, now)
        self.release(untried, token)

    def oldest_waiting(self, now: datetime) -> float:
        with self.db.transaction() as session:
            oldest = session.query(func.min(WebhookDelivery.created_at)).filter(
                WebhookDelivery.state.in_(("pending", "claimed"))).scalar()
        return max((now - oldest).total_seconds(), 0.0) if oldest else 0.0

    def deliver(self, row: WebhookDelivery, token: str, now: datetime, report: WebhookReport) -> bool:
        hook = self.hooks.get(row.endpoint)
        if hook is None:
            self.finish(row, token, now, "dropped", f"no [[webhooks]] named {row.endpoint!r} any more")
            report.failed += 1
            return True
        if hook.format == "json":
            body = row.payload.encode("utf-8")  # as it was made, once for every endpoint
        else:
            event = json.loads(row.payload)
            lead_id = (event.get("data", {}).get("lead") or {}).get("id")
            message = formatted(hook.format, event, self.config.reminders.link(lead_id) if lead_id else None)
            body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        stamp = int(time.time())  # the attempt's, by the wall clock: receivers check it is recent
        headers = {"content-type": "application/json", "user-agent": "leadtap", "webhook-id": row.webhook_id,
                   "webhook-timestamp": str(stamp),
                   "webhook-signature": signature(secret_bytes(hook.secret.reveal()), row.webhook_id, stamp, body)}
        started = time.monotonic()
        answer = self.send(hook.url, body, headers, hook.timeout.total_seconds(), session=self.http,
                           ca_file=hook.ca_file)
        about = {"endpoint": hook.name, "type": row.event, "lead_id": row.lead_id, "webhook_id": row.webhook_id,
                 "ms": round((time.monotonic() - started) * 1000)}
        seconds = time.monotonic() - started
        if answer.delivered:
            self.delivered.append((row.id, str(answer)))  # recorded with others: one commit for many
            report.sent += 1
            report.attempts.append((hook.name, "delivered", seconds))
            self.log.info("webhook_delivered", status=answer.status, **about)
            return True
        if answer.status == 410:
            self.gone(hook, row, token, now, answer)
            self.gone_now.add(hook.name)
            report.gone += 1
            report.attempts.append((hook.name, "gone", seconds))
            self.log.error("webhook_endpoint_gone", url=hook.url, **about)
            return False
        given_up = self.retry(row, hook.horizon, token, now, answer)
        report.failed += given_up
        report.retry += not given_up
        report.attempts.append((hook.name, "given_up" if given_up else "retried", seconds))
        self.log.warning("webhook_failed", answer=str(answer), given_up=given_up, **about)
        return False

    def record_delivered(self, token: str, now: datetime) -> None:
        """The deliveries made since the last record, in one transaction (a crash
        before it sends them again, with their ids: receivers deduplicate)."""
        if self.delivered:
            table = WebhookDelivery.__table__
            with self.db.transaction() as session:
                session.connection().execute(
                    update(table).where(table.c.id == bindparam("row_id"), table.c.token == token,
                                        table.c.state == "claimed")
                    .values(state="sent", sent_at=now, answer=bindparam("said"), last_error=None),
                    [{"row_id": row_id, "said": answer} for row_id, answer in self.delivered])
            self.delivered = []

    def finish(self, row: WebhookDelivery, token: str, now: datetime, state: str, error: str | None,
               answer: Answer | None = None) -> None:
        with self.db.transaction() as session:
            if OUTBOX.finish(session, row.id, token, now, state, error) and answer is not None:
                session.get(WebhookDelivery, row.id).answer = str(answer)

    def retry(self, row: WebhookDelivery, horizon: timedelta, token: str, now: datetime, answer: Answer) -> bool:
        """Pending again after a backoff with jitter; given up past the horizon. True when given up."""
        with self.db.transaction() as session:
            state = OUTBOX.retry_later(session, row.id, token, now, str(answer), until=row.created_at + horizon,
                                       spread=self.rng.uniform(0.8, 1.2), answer=str(answer))
        return state == "failed"

    def gone(self, hook, row: WebhookDelivery, token: str, now: datetime, answer: Answer) -> None:
        """410 Gone: the endpoint takes nothing more; what it was owed is given up."""
        with self.db.transaction() as session:
            if session.get(WebhookEndpoint, hook.name) is None:
                session.add(WebhookEndpoint(name=hook.name, url=hook.url, disabled_at=now, reason=str(answer)))
            else:
                endpoint = session.get(WebhookEndpoint, hook.name)
                endpoint.url, endpoint.disabled_at, endpoint.reason = hook.url, now, str(answer)
            session.query(WebhookDelivery).filter(
                WebhookDelivery.endpoint == hook.name, WebhookDelivery.state == "pending"
            ).update({"state": "failed", "last_error": f"the endpoint answered 410 Gone: {answer}"})
            OUTBOX.finish(session, row.id, token, now, "failed", f"the endpoint answered 410 Gone: {answer}")
            session.get(WebhookDelivery, row.id).answer = str(answer)

    def release(self, row_ids: list[int], token: str) -> None:
        if row_ids:
            with self.db.transaction() as session:
                OUTBOX.release(session, row_ids, token)
