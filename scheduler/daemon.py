"""``leadtap run``: one APScheduler 3.x scheduler in the foreground.

- an ingest job per active mailbox every ``poll_interval``, the reminder
  sweep every ``[reminders].sweep_every``, and the owed new-lead emails every
  ``[notifications].send_every`` and after a poll that made leads; jobs never
  overlap themselves, a slow mailbox never delays the others (each job has
  its own thread);
- SIGTERM/SIGINT: stop taking new work, finish the batch or reminder in hand,
  exit 0; SIGHUP: reload the config, keep the running one if the new is bad;
- systemd: READY=1 once the database is checked and the jobs scheduled,
  WATCHDOG=1 while the scheduler makes progress, STATUS=, STOPPING=1;
- a fatal error (the schema gone) ends the process non-zero: never
  "running but dead".
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from leadtap.core.store.db import Lead
from leadtap.core.rules.model import Outcome
from leadtap.core.errors import ConfigError, DatabaseUnavailable, LeadtapError, SchemaError
from leadtap.core.store.engine import describe_db_error
from leadtap.core.store.services import trouble_counts
from leadtap.core.logs import get_logger
from leadtap.scheduler.leases import MailboxLeases
from leadtap.scheduler.metrics import Metrics
from leadtap.scheduler.sd_notify import Notifier
from leadtap.scheduler.push import Push

MISFIRE_GRACE = 30  # seconds a late run may still start
STOP_WITHIN = 10  # seconds


class Fatal(Exception):
    """The daemon cannot go on: exit non-zero so systemd restarts it."""


@dataclass
class State:
    stop: threading.Event = field(default_factory=threading.Event)  # set by the main thread
    stopping: bool = False  # set by the signal handlers
    reloading: bool = False
    fatal: str | None = None
    last_beat: float = field(default_factory=time.monotonic)
    last_poll: dict[str, datetime] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # mailbox → why its sign-in is refused (an outage)


class Daemon(Push):
    def __init__(self, app: Any, load_app: Callable[[], Any], environ: Mapping[str, str],
                 clock: Callable[[], datetime] | None = None):
        """``app`` is the composition root's App; ``load_app`` builds a fresh one
        from the config file (on SIGHUP)."""
        self.app = app
        self.load_app = load_app
        self.notifier = Notifier(environ)
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.state = State()
        self.log = get_logger("leadtap.run")
        self.lock_file = None
        self.notifying = threading.Lock()
        # PostgreSQL: any number of workers split the mailboxes; SQLite: one worker (the file lock).
        self.leases: MailboxLeases | None = None
        self.wakes: dict[str, threading.Event] = {}  # set by IDLE: poll this mailbox (again) now
        self.passing: dict[str, threading.Lock] = {}  # held while a pass over the mailbox runs
        self.metrics: Metrics | None = None  # [metrics] listen
        self.watching = threading.Event()  # set to end this configuration's IDLE watchers

    # --- start and stop ---------------------------------------------------------

    def run(self) -> int:
        self.lock_sqlite(self.app.db)  # before anything is written
        self.app.ready_database()
        self.serve_metrics()
        if not self.app.db.is_sqlite:
            self.leases = MailboxLeases(self.app.db, self.app.config, self.clock)
            self.leases.present()  # counted as live (and serving its share) before the first poll
        scheduler = BackgroundScheduler(
            # Threads are started only as jobs need them: room for every mailbox,
            # also those a reload adds; the heartbeat never waits behind a job.
            executors={"default": ThreadPoolExecutor(max(32, len(self.app.config.mailboxes) + 4)),
                       "heartbeat": ThreadPoolExecutor(1)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": MISFIRE_GRACE},
            timezone=timezone.utc,
        )
        scheduler.add_listener(self.on_job_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        self.schedule(scheduler)
        self.install_signals()
        scheduler.start()
        self.start_watchers()
        self.notifier.ready(self.status())
        self.log.info("started", mailboxes=[b.name for b in self.app.config.mailboxes if b.active],
                      reminder_rules=len(self.app.config.reminders.rules))
        try:
            self.supervise(scheduler)
        finally:
            self.notifier.stopping()
            self.state.stop.set()
            self.shut_down(scheduler)
        if self.state.fatal:
            self.log.error("stopped_on_fatal_error", error=self.state.fatal)
            return 1
        self.log.info("stopped")
        return 0

    def serve_metrics(self) -> None:
        metrics = self.app.config.metrics
        if not metrics.enabled:
            return
        self.metrics = Metrics()
        try:
            self.metrics.serve(metrics.host, metrics.port)
        except OSError as exc:
            raise ConfigError(self.app.config.path, "metrics.listen",
                              f"cannot listen on {metrics.host}:{metrics.port}: {exc.strerror or exc}") from None
        self.log.info("metrics_listening", address=f"{metrics.host}:{metrics.port}")

    def shut_down(self, scheduler: BackgroundScheduler) -> None:
        """The jobs see `stop` and finish what they hold; one stuck in a network
        call past STOP_WITHIN is abandoned — its batch was not committed (its
        messages stay unread) or its reminders not confirmed (sent again later)."""
        self.watching.set()
        closing = threading.Thread(target=scheduler.shutdown, kwargs={"wait": True}, daemon=True)
        closing.start()
        closing.join(STOP_WITHIN - 1)
        if closing.is_alive():
            self.log.warning("stop_deadline", detail=f"jobs still running after {STOP_WITHIN - 1}s are abandoned")
            logging.shutdown()
            os._exit(1 if self.state.fatal else 0)
        self.give_back_leases()
        self.app.close()

    def give_back_leases(self) -> None:
        """The other workers take this one's mailboxes at their next poll, not after the leases run out."""
        if self.leases is None:
            return
        try:
            self.leases.leave()
        except Exception as exc:  # the database is gone: the leases run out by themselves
            self.log.warning("leases_not_given_back", error=f"{type(exc).__name__}: {exc}")

    def supervise(self, scheduler: BackgroundScheduler) -> None:
        """The main thread: pings the watchdog while the scheduler makes progress,
        reloads on SIGHUP, returns on SIGTERM or a fatal error."""
        watchdog = self.notifier.watchdog_seconds
        last_ping = 0.0
        while not self.state.stop.wait(0.25):  # a quarter second: signals are seen at once
            if self.state.stopping:
                return
            if self.state.reloading:
                self.state.reloading = False
                self.reload(scheduler)
            now = time.monotonic()
            if watchdog and now - last_ping >= watchdog / 2 and now - self.state.last_beat < watchdog:
                self.notifier.watchdog()  # at half of WATCHDOG_USEC, while the scheduler makes progress
                last_ping = now

    def install_signals(self) -> None:
        # A handler only sets a flag: no lock is taken inside a signal handler.
        signal.signal(signal.SIGTERM, self.on_stop_signal)
        signal.signal(signal.SIGINT, self.on_stop_signal)
        signal.signal(signal.SIGHUP, self.on_reload_signal)

    def on_stop_signal(self, *_: object) -> None:
        self.state.stopping = True

    def on_reload_signal(self, *_: object) -> None:
        self.state.reloading = True

    def lock_sqlite(self, db) -> None:
        """On SQLite one `leadtap run` per database file: a second one refuses."""
        if not db.is_sqlite or not db.engine.url.database:
            return
        path = Path(db.engine.url.database).resolve()
        self.lock_file = open(f"{path}.run-lock", "a+")  # not "w": the holder's pid stays readable
        try:
            fcntl.flock(self.lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.lock_file.seek(0)
            holder = self.lock_file.read().strip() or "?"
            raise LeadtapError(
                f"another `leadtap run` (pid {holder}) is already using {path}; one worker per SQLite file "
                "(use PostgreSQL for several)"
            ) from None
        self.lock_file.truncate(0)
        self.lock_file.write(str(os.getpid()))
        self.lock_file.flush()

    # --- jobs -----------------------------------------------------------------------

    def schedule(self, scheduler: BackgroundScheduler) -> None:
        config = self.app.config
        now = self.clock()
        for box in config.mailboxes:
            if box.active:
                scheduler.add_job(self.ingest_job, IntervalTrigger(seconds=box.poll_interval.total_seconds()),
                                  args=[box.name], id=f"ingest:{box.name}", name=f"ingest {box.name}",
                                  next_run_time=now, replace_existing=True)
        if config.sweeps:
            scheduler.add_job(self.reminder_job, IntervalTrigger(seconds=config.reminders.sweep_every.total_seconds()),
                              id="reminders", name="reminder sweep", next_run_time=now, replace_existing=True)
        if config.owes_mail:
            scheduler.add_job(self.notification_job,
                              IntervalTrigger(seconds=config.notifications.send_every.total_seconds()),
                              id="notifications", name="notifications", next_run_time=now, replace_existing=True)
        if self.leases is not None:
            scheduler.add_job(self.presence_job, IntervalTrigger(seconds=self.leases.presence_every().total_seconds()),
                              id="presence", name="presence", next_run_time=now, replace_existing=True)
        beat = (self.notifier.watchdog_seconds or 10) / 4
        scheduler.add_job(self.heartbeat, IntervalTrigger(seconds=beat), id="heartbeat", name="heartbeat",
                          next_run_time=now, replace_existing=True, executor="heartbeat")

    def ingest_job(self, mailbox: str) -> None:
        """A pass over ``mailbox`` — from its interval job, or from IDLE's new-mail notice
        (in a thread of its own). One pass at a time per mailbox: a notice during a
        pass makes that pass go again, checked once more after the lock is let go."""
        passing = self.passing.setdefault(mailbox, threading.Lock())
        wake = self.wakes.setdefault(mailbox, threading.Event())
        wake.set()
        while not self.state.stop.is_set() and wake.is_set():
            if not passing.acquire(blocking=False):
                return  # a pass is under way: it sees the notice and goes again
            try:
                while wake.is_set() and not self.state.stop.is_set():
                    wake.clear()
                    if not self.one_pass(mailbox):
                        return
            finally:
                passing.release()

    def one_pass(self, mailbox: str) -> bool:
        """Poll once (if this worker serves the mailbox) and what follows a pass; False: not served here."""
        app = self.app
        self.check_schema(app)
        leases, metrics = self.leases, self.metrics
        if leases is not None:
            held = leases.may_poll(mailbox)
            if metrics:
                metrics.lease.labels(mailbox).set(int(held))
            if not held:
                self.forget_sign_in(mailbox)  # the worker that serves it says how its sign-in fares
                return False  # another worker serves it
        lost = threading.Event()
        report = app.ingest_mailbox(mailbox, should_stop=lambda: self.state.stop.is_set() or lost.is_set(),
                                    on_progress=lambda report: self.progress(mailbox, report, lost),
                                    refusal_said_by_caller=True)
        if metrics:
            metrics.poll(report)
            self.count_troubles(mailbox)
        if leases is not None:
            leases.after_pass(mailbox)
        self.state.last_poll[mailbox] = self.clock()
        self.note_sign_in(mailbox, report)
        self.notifier.status(self.status())
        if report.failed and not report.sign_in_refused:
            self.log.warning("poll_done", mailbox=mailbox, summary=report.summary())
        if ((report.counts[Outcome.LEAD] and (app.config.notifications.enabled or app.config.workflows
                                              or app.config.webhooks))
                or (report.counts[Outcome.NOT_LEAD] and app.config.commands.enabled)):
            self.notification_job(wait=False)  # new owners, and replies' senders, hear within the poll
        return True

    def note_sign_in(self, mailbox: str, report) -> None:
        """A refused sign-in is said once per outage (it fails every pass until
        a person acts), and its end too."""
        if report.sign_in_refused:
            if self.state.refused.get(mailbox) is None:
                self.log.error("mailbox_needs_attention", mailbox=mailbox, error=report.error)
            self.state.refused[mailbox] = report.error
        elif not report.error and self.state.refused.pop(mailbox, None) is not None:
            self.log.info("mailbox_sign_in_restored", mailbox=mailbox)

    def forget_sign_in(self, mailbox: str) -> None:
        self.state.refused.pop(mailbox, None)
        if self.metrics is not None:
            with suppress(KeyError):
                self.metrics.auth_ok.remove(mailbox)

    def presence_job(self) -> None:
        """Alive and renewing; a mailbox taken here (a dead worker's) is polled at once."""
        for mailbox in self.leases.present():
            if self.metrics is not None:
                self.metrics.lease.labels(mailbox).set(1)
            threading.Thread(target=self.guarded_pass, args=(mailbox,), name=f"taken {mailbox}", daemon=True).start()

    def progress(self, mailbox: str, report, lost: threading.Event) -> None:
        """After each batch of a pass: the lease renewed (lost: the pass stops), the waiting messages counted."""
        if self.leases is not None and not self.leases.keep(mailbox):
            lost.set()
        if self.metrics is not None:
            self.metrics.progress(report)

    def count_troubles(self, mailbox: str) -> None:
        with self.app.db.transaction() as session:
            failed, set_aside = trouble_counts(session, mailbox, self.app.config.ingest.max_attempts)
        self.metrics.troubles([(mailbox, failed, set_aside)])

    def notification_job(self, wait: bool = True) -> None:
        """One send of what is owed. The interval job and a poll's call never
        send side by side; a poll does not wait for one under way (it sends
        what the poll made anyway)."""
        if self.state.stop.is_set() or not self.notifying.acquire(blocking=wait):
            return
        try:
            report = self.app.send_notifications(should_stop=self.state.stop.is_set)
        finally:
            self.notifying.release()
        if self.metrics is not None:
            self.metrics.sent(report)
            self.metrics.smtp(self.app.smtp_down)
        if report.anything:
            self.log.info("notifications_done", summary=report.summary())

    def reminder_job(self) -> None:
        if self.state.stop.is_set():
            return
        app = self.app
        self.check_schema(app)
        report = app.reminder_sweep(should_stop=self.state.stop.is_set).run()
        if self.metrics is not None:
            self.metrics.sweep(report)
            self.metrics.smtp(app.smtp_down)
        if report.due or report.skipped or report.deals.anything:
            self.log.info("sweep_done", summary=report.summary())
        if report.owes_mail:
            self.notification_job(wait=False)  # the deals' owners hear at once

    def heartbeat(self) -> None:
        self.state.last_beat = time.monotonic()

    def check_schema(self, app) -> None:
        try:
            app.db.check_schema()
        except SchemaError as exc:
            self.fail(str(exc))
            raise Fatal(str(exc)) from None
        # DatabaseUnavailable goes on up: the job listener logs it, the next run tries again.

    def on_job_event(self, event: JobExecutionEvent) -> None:
        self.state.last_beat = time.monotonic()
        exc = event.exception
        if exc is None or isinstance(exc, Fatal):
            return
        if isinstance(exc, (DBAPIError, DatabaseUnavailable)):  # an outage, as the ingest pass says it: no traceback
            kind, _, mailbox = event.job_id.partition(":")
            self.log.warning(f"{kind}_failed", error=f"database unavailable: {describe_db_error(exc)}",
                             **({"mailbox": mailbox} if mailbox else {}), detail="tried again at its next run")
            return
        self.log.error("job_failed", job=event.job_id, error=str(exc), traceback=event.traceback)

    def fail(self, reason: str) -> None:
        self.state.fatal = reason
        self.state.stop.set()

    # --- reload ---------------------------------------------------------------------

    def reload(self, scheduler: BackgroundScheduler) -> None:
        try:
            fresh = self.load_app()
            fresh.config.read_secrets()
            if fresh.config.database.url != self.app.config.database.url:
                self.log.warning("reload_database_url_ignored", detail="a new database URL needs a restart")
            fresh.use_database(self.app.db)
            fresh.ready_database()  # the new owners, with the same retries as at start
        except Exception as exc:  # a bad config, or the database busy right now: keep what runs
            error = str(exc) if isinstance(exc, ConfigError) else f"{type(exc).__name__}: {exc}"
            self.log.error("reload_refused", error=error, detail="the running configuration stays")
            return
        removed = ({b.name for b in self.app.config.mailboxes if b.active}
                   - {b.name for b in fresh.config.mailboxes if b.active})
        self.app = fresh
        if self.leases is not None:
            self.leases.configure(fresh.config)
            self.leases.forget(removed)
        for job in scheduler.get_jobs():
            if job.id.startswith("ingest:") or job.id in ("reminders", "notifications", "presence"):
                job.remove()
        self.watching.set()  # the old configuration's watchers end within a second
        self.schedule(scheduler)
        self.start_watchers()
        self.notifier.status(self.status())
        self.log.info("reloaded", mailboxes=[b.name for b in fresh.config.mailboxes if b.active])

    def status(self) -> str:
        boxes = [b.name for b in self.app.config.mailboxes if b.active]
        last = max(self.state.last_poll.values()).strftime("%H:%M:%S") if self.state.last_poll else "never"
        status = f"{len(boxes)} mailbox(es), last poll {last}, {self.leads_today()} lead(s) today"
        refused = sorted(name for name in self.state.refused if name in boxes)
        return status + (f"; sign-in refused, needs attention: {', '.join(refused)}" if refused else "")

    def leads_today(self) -> int:
        start = self.clock().replace(hour=0, minute=0, second=0, microsecond=0)
        try:
            with self.app.db.transaction() as session:
                return session.scalar(select(func.count()).select_from(Lead).where(Lead.created_at >= start)) or 0
        except Exception:  # the status line must never take the daemon down
            return 0

