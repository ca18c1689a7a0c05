"""Push for ``leadtap run``: a thread per mailbox waits in IMAP IDLE (through
``App.watch_mailbox``) and, on new mail, runs the mailbox's pass at once in a
thread of its own — one pass at a time per mailbox (``Daemon.ingest_job``).
Only the mailbox's lease holder watches; a reload ends this configuration's
watchers and starts the next one's."""

from __future__ import annotations

import threading
from typing import Any


class Push:
    """Mixed into ``Daemon``: uses its app, state, leases, metrics, log and ``ingest_job``."""

    def start_watchers(self) -> None:
        """One thread per active mailbox that may IDLE; ended by a stop or a reload."""
        self.watching = threading.Event()
        for box in self.app.config.mailboxes:
            if box.active and box.idle is not False:
                threading.Thread(target=self.watch, args=(box.name, self.app, self.watching),
                                 name=f"idle {box.name}", daemon=True).start()

    def watch(self, mailbox: str, app: Any, ending: threading.Event) -> None:
        def new_mail() -> None:
            if not ending.is_set():  # a pass now, beside the interval job (one pass at a time, see ingest_job)
                threading.Thread(target=self.guarded_pass, args=(mailbox,), name=f"push {mailbox}", daemon=True).start()

        def state(connected: bool) -> None:
            if self.metrics is not None:
                self.metrics.idle.labels(mailbox).set(int(connected))

        leases = self.leases
        try:
            app.watch_mailbox(mailbox, new_mail, should_stop=lambda: self.state.stop.is_set() or ending.is_set(),
                              may_watch=(lambda: leases.holds(mailbox)) if leases else (lambda: True),
                              wait=ending.wait, on_state=state)
        except Exception:  # a bug: this mailbox is polled on its interval, as without IDLE
            self.log.exception("idle_crashed", mailbox=mailbox)

    def guarded_pass(self, mailbox: str) -> None:
        """IDLE's pass, outside the scheduler: its failures are logged as a job's are."""
        try:
            self.ingest_job(mailbox)
        except Exception as exc:
            self.log.error("job_failed", job=f"push:{mailbox}", error=str(exc), exc_info=True)
