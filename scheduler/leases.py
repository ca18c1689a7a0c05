"""The worker's side of the mailbox leases (``core.leases``): before a pass,
hold the mailbox's lease or skip the pass; during a long pass, renew it;
after it, give it back when this worker holds more than its share; on the
way out, give every lease back."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Callable

import structlog

from leadtap.core import leases
from leadtap.core.config import Config
from leadtap.core.db import Database


def worker_name() -> str:
    """host:pid:random — unique among the workers of one database."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class MailboxLeases:
    def __init__(self, db: Database, config: Config, clock: Callable[[], datetime], worker: str | None = None):
        self.db, self.config, self.clock = db, config, clock
        self.worker = worker or worker_name()
        self.log = structlog.get_logger("leadtap.leases").bind(worker=self.worker)

    def configure(self, config: Config) -> None:
        """A reloaded config: another set of mailboxes, other poll intervals."""
        self.config = config

    def ttl(self, mailbox: str) -> timedelta:
        """Two poll intervals (a mailbox a reload removed keeps a minute's worth until its pass ends)."""
        try:
            return 2 * self.config.mailbox(mailbox).poll_interval
        except KeyError:
            return timedelta(minutes=2)

    def alive_within(self) -> timedelta:
        """Three presence intervals: shorter than any lease, so a dead worker stops counting
        before its mailboxes' leases run out, whatever their poll intervals."""
        return 3 * self.presence_every()

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
        another worker took it meanwhile (this one was too slow): the pass should stop."""
        with self.db.transaction() as session:
            now = leases.database_now(session, self.clock)
            leases.seen(session, self.worker, now)
            kept = leases.renew(session, mailbox, self.worker, now, self.ttl(mailbox))
        if not kept:
            self.log.warning("lease_lost", mailbox=mailbox, detail="another worker serves it now; this pass stops")
        return kept

    def present(self) -> None:
        """Alive, also while every mailbox job is busy in a long pass (the presence job)."""
        with self.db.transaction() as session:
            leases.seen(session, self.worker, leases.database_now(session, self.clock))

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
