"""The worker's side of the mailbox leases (``core.store.leases``): before a pass,
hold the mailbox's lease or skip the pass; during a long pass, renew it;
after it, give it back when this worker holds more than its share; on the
way out, give every lease back."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Callable

from leadtap.core.store import leases
from leadtap.core.config.load import Config
from leadtap.core.store.engine import Database
from leadtap.core.logs import get_logger


def worker_name() -> str:
    """host:pid:random — unique among the workers of one database."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class MailboxLeases:
    def __init__(self, db: Database, config: Config, clock: Callable[[], datetime], worker: str | None = None):
        self.db, self.config, self.clock = db, config, clock
        self.worker = worker or worker_name()
        self.log = get_logger("leadtap.leases").bind(worker=self.worker)

    def configure(self, config: Config) -> None:
        """A reloaded config: another set of mailboxes, other poll intervals."""
        self.config = config

    def ttl(self, mailbox: str) -> timedelta:
        """One and a half poll intervals, renewed at least three times meanwhile (each presence,
        each pass, each batch); a removed mailbox keeps a minute and a half until its pass ends."""
        try:
            return 1.5 * self.config.mailbox(mailbox).poll_interval
        except KeyError:
            return timedelta(seconds=90)

    def alive_within(self) -> timedelta:
        """Two and a half presence intervals: no longer than any lease, so a dead worker has
        stopped counting by the time its mailboxes' leases run out, whatever their intervals —
        and a survivor's next presence (half an interval later) takes them: within two poll
        intervals of the death."""
        return 2.5 * self.presence_every()

    def active(self) -> list:
        return [b for b in self.config.mailboxes if b.active]

    def may_poll(self, mailbox: str) -> bool:
        """Hold (renew or take) the lease; False: another worker serves it, or this one has its share."""
        with self.db.transaction() as session:
            now = leases.database_now(session, self.clock)
            leases.seen(session, self.worker, now)
            share = leases.fair_share(session, len(self.active()), now, self.alive_within())
            got = leases.hold(session, mailbox, self.worker, now, self.ttl(mailbox), share)
        if got == "taken":
            self.log.info("lease_taken", mailbox=mailbox, share=share)
        return got is not None

    def holds(self, mailbox: str) -> bool:
        """True while this worker serves ``mailbox`` (only its holder waits in IDLE on it)."""
        with self.db.transaction() as session:
            return mailbox in leases.held_by(session, self.worker, leases.database_now(session, self.clock))

    def keep(self, mailbox: str) -> bool:
        """During a long pass, after each batch: the lease must not run out under it. False when
        the pass should stop: another worker took the lease meanwhile, or more workers came and
        this one holds more than its share (the mailbox then goes back after the pass, for one
        of them — a backlog is split at once, not after it)."""
        with self.db.transaction() as session:
            now = leases.database_now(session, self.clock)
            leases.seen(session, self.worker, now)
            kept = leases.renew(session, mailbox, self.worker, now, self.ttl(mailbox))
            share = leases.fair_share(session, len(self.active()), now, self.alive_within())
            over = len(leases.held_by(session, self.worker, now)) > share
        if not kept:
            self.log.warning("lease_lost", mailbox=mailbox, detail="another worker serves it now; this pass stops")
        elif over:
            self.log.info("lease_yielding", mailbox=mailbox, share=share)
        return kept and not over

    def present(self) -> list[str]:
        """The presence job: alive (also while every mailbox job is busy in a long pass), this
        worker's leases renewed, and free mailboxes taken up to its share — returned, to be
        polled at once (a dead worker's, without waiting for their poll interval)."""
        taken = []
        with self.db.transaction() as session:
            now = leases.database_now(session, self.clock)
            leases.seen(session, self.worker, now)
            mine = leases.held_by(session, self.worker, now)
            for mailbox in sorted(mine):
                leases.renew(session, mailbox, self.worker, now, self.ttl(mailbox))
            share = leases.fair_share(session, len(self.active()), now, self.alive_within())
            for box in self.active():
                if len(mine) + len(taken) >= share:
                    break
                if box.name not in mine and leases.hold(session, box.name, self.worker, now, self.ttl(box.name),
                                                        share) == "taken":
                    taken.append(box.name)
        for mailbox in taken:
            self.log.info("lease_taken", mailbox=mailbox, share=share)
        return taken

    def forget(self, mailboxes: set[str]) -> None:
        """A reload removed these mailboxes (or made them inactive): their leases go back."""
        with self.db.transaction() as session:
            for mailbox in sorted(mailboxes):
                leases.give_back(session, self.worker, mailbox)

    def presence_every(self) -> timedelta:
        return max(min((b.poll_interval for b in self.active()), default=timedelta(seconds=60)) / 2,
                   timedelta(seconds=1))

    def after_pass(self, mailbox: str) -> None:
        """Over its share (more workers came): this mailbox goes back, for one of them."""
        with self.db.transaction() as session:
            now = leases.database_now(session, self.clock)
            share = leases.fair_share(session, len(self.active()), now, self.alive_within())
            if len(leases.held_by(session, self.worker, now)) > share:
                leases.give_back(session, self.worker, mailbox)
                self.log.info("lease_given_back", mailbox=mailbox, share=share)

    def leave(self) -> None:
        with self.db.transaction() as session:
            leases.leave(session, self.worker)
