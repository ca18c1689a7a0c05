"""The ingest pass: the messages of one mailbox become leads, exactly once.

Per batch of UIDs:

1. leave out what was set aside (failed too often);
2. read ``RFC822.SIZE``; a message over the limit is recorded as failed
   without being downloaded;
3. fetch the rest with ``BODY.PEEK[]`` in one round trip;
4. parse → classify → extract, outside any transaction;
5. one transaction: lock the rotation, decide every message in memory and
   write the batch in a few statements (``core.use_cases.batch``); if that fails, the
   batch is written again one message at a time, each in a savepoint, so the
   message at fault is rolled back alone and recorded as failed;
6. commit, then flag ``\\Seen`` what was settled — including messages the
   ledger had settled before (a crash came between a commit and its flag).

A crash anywhere loses nothing: until step 6 the messages are unread, and the
ledger (committed with the leads) stops them from becoming leads twice.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Callable, Iterator

from sqlalchemy.exc import DBAPIError, OperationalError

from leadtap.core.config.load import Config, MailboxConfig
from leadtap.core.store.engine import Database, describe_db_error, utcnow
from leadtap.core.errors import ConfigError, DatabaseUnavailable, ImapError, ImapLoginError
from leadtap.core.rules.model import Outcome
from leadtap.core.use_cases.batch import LeadBatch
from leadtap.core.use_cases.changes import LeadRules
from leadtap.core.use_cases.mail_changes import record_mail
from leadtap.core.rules.lifecycle import AutomationBlocked, StageChanged, StatusChanged
from leadtap.core.use_cases.reply_changes import ReplySettings, is_reply
from leadtap.core.use_cases.reply_changes import handle as handle_reply
from leadtap.core.store.services import (
    LeadSettings,
    MessageRef,
    Result,
    advance_last_uid,
    last_uid,
    ledger_entries,
    ledger_settled,
    lock_rotation,
    retryable_uids,
    set_aside_uids,
    kept_place,
)
from leadtap.ingest.extract import BoundTemplate
from leadtap.ingest.imap import ImapMailbox, token_expired
from leadtap.ingest.report import PassReport
from leadtap.ingest.prepare import PARALLEL_FROM, Fetched, Limits, Prepared, prepare_batch, prepare_in_worker, start_worker
from leadtap.core.logs import get_logger

OpenMailbox = Callable[[MailboxConfig], AbstractContextManager[ImapMailbox]]




class MailboxIngest:
    def __init__(
        self,
        config: Config,
        box: MailboxConfig,
        db: Database,
        templates: list[BoundTemplate],
        open_mailbox: OpenMailbox,
        rules: LeadRules,
        clock: Callable[[], datetime] = utcnow,
        should_stop: Callable[[], bool] = lambda: False,
        on_progress: Callable[["PassReport"], None] | None = None,
        reply_settings: ReplySettings | None = None,
        refusal_said_by_caller: bool = False,
    ):
        self.config, self.box, self.db = config, box, db
        self.reply_settings = reply_settings if box.kind != "sent" else None  # commands are read from received mail only
        self.on_progress = on_progress  # after each batch: a terminal shows how far the pass is
        self.refusal_said_by_caller = refusal_said_by_caller  # the worker says a refused sign-in once an outage
        self.rules = rules
        self.templates = templates
        self.open_mailbox = open_mailbox
        self.clock = clock
        self.should_stop = should_stop
        self.settings = LeadSettings.for_mailbox(config, box)
        self.max_attempts = config.ingest.max_attempts
        self.limit = Limits(config.ingest.max_message_size, config.ingest.message_timeout)
        self.log = get_logger("leadtap.ingest").bind(mailbox=box.name)

    def run(self) -> PassReport:
        report = PassReport(self.box.name)
        self.ceiling: int | None = None  # the last UID may not pass a message left without a ledger row
        started = time.monotonic()
        try:
            self.read_with_fresh_token_once(report)
        except ImapLoginError as exc:
            report.error, report.sign_in_refused = str(exc), exc.attention
        except (ImapError, ConfigError) as exc:  # ConfigError: this mailbox's password cannot be read
            report.error = str(exc)
        except (OperationalError, DBAPIError, DatabaseUnavailable) as exc:
            report.error = f"database unavailable: {describe_db_error(exc)}"
        except Exception as exc:  # a bug: this mailbox's pass ends, the others go on
            report.error = f"unexpected error: {type(exc).__name__}: {exc}"
            self.log.exception("pass_crashed", error=report.error)
            return report
        report.seconds = time.monotonic() - started
        if report.sign_in_refused and self.refusal_said_by_caller:
            self.log.debug("pass_failed", error=report.error, seconds=round(report.seconds, 3))
        elif report.error:
            self.log.error("pass_failed", error=report.error, seconds=round(report.seconds, 3))
        else:  # one line a poll, also when it found nothing: the journal shows the worker is alive
            self.log.info("pass_finished", seen=report.total, repaired=report.repaired,
                          seconds=round(report.seconds, 3), **{o.value: report.counts[o] for o in Outcome})
        return report

    def read_with_fresh_token_once(self, report: PassReport) -> None:
        """Exchange ends a session when its OAuth2 token runs out, in the
        middle of a pass too (``BYE … AccessTokenExpired``): what was read is
        recorded, and the pass goes on once, on a new session with a fresh
        token — a reconnect, not a failure."""
        imap = self.open_mailbox(self.box)
        try:
            self.read(imap, report)
        except ImapError as exc:
            if self.box.oauth2 is None or not token_expired(exc):
                raise
            imap.token_spent()
            self.log.info("pass_token_expired", detail="going on with a fresh token")
            self.read(self.open_mailbox(self.box), report)

    def read(self, imap: ImapMailbox, report: PassReport) -> None:
        with imap:
            uids = self.candidates(imap)
            report.total = len(uids)
            if uids:
                self.log.info("pass_started", uidvalidity=imap.uidvalidity, candidates=len(uids))
                self.ingest_batches(imap, list(chunks(uids, self.config.ingest.batch_size)), report)

    def candidates(self, imap: ImapMailbox) -> list[int]:
        """Unread UIDs (or those above the last one seen), less the set-aside ones.

        1. A sent folder never read before starts at its newest message: what
           the team sent before leadtap watched it is history, not outreach
           happening now.
        2. A folder whose place was kept under another UIDVALIDITY (it was
           recreated, restored, or the server renumbered it) is read again
           from its first message — its UIDs say nothing about what was read
           — and the ledger's message identities keep what was read before
           from counting twice. Starting such a sent folder at its newest
           message would lose the outreach sent since, for good.
        """
        with self.db.transaction() as session:
            kept = kept_place(session, self.box.name)
            moved = kept is not None and kept.folder is not None and kept.folder != self.box.folder
            if self.box.is_sent and (kept is None or moved):  # a folder this mailbox never read
                self.start_sent_folder(session, imap, kept.folder if moved else None)
                return []
            if kept is not None and kept.uidvalidity != imap.uidvalidity:
                self.restart_folder(session, kept.uidvalidity, imap.uidvalidity)
            after = last_uid(session, self.box.name, imap.uidvalidity)
            retry = retryable_uids(session, self.box.name, imap.uidvalidity, self.max_attempts)
            set_aside = set_aside_uids(session, self.box.name, imap.uidvalidity, self.max_attempts)
        if self.box.unread_only:
            found = imap.unseen_uids()
        else:
            found = sorted(set(imap.uids_after(after)) | {u for u in retry if u <= after})
        return [uid for uid in found if uid not in set_aside]

    def start_sent_folder(self, session, imap: ImapMailbox, moved_from: str | None = None) -> None:
        """At its newest message; ``moved_from``: the config now names another
        folder (its history is no more outreach than the first one's was)."""
        newest = imap.newest_uid()
        advance_last_uid(session, self.box.name, imap.uidvalidity, newest, self.box.folder)
        self.log.info("sent_folder_started", uidvalidity=imap.uidvalidity, after_uid=newest,
                      **({"moved_from": moved_from} if moved_from else {}))

    def restart_folder(self, session, old: int, new: int) -> None:
        """The place is kept under the new UIDVALIDITY at once, so an empty
        recreated folder is said once, not at every pass."""
        advance_last_uid(session, self.box.name, new, 0, self.box.folder)
        self.log.warning("uidvalidity_changed", old=old, new=new,
                         detail="the folder is read again from its first message; what was read before counts once")

    def ingest_batches(self, imap: ImapMailbox, batches: list[list[int]], report: PassReport) -> None:
        if len(batches) >= PARALLEL_FROM and self.config.ingest.parallel_parsing:
            try:
                pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=start_worker, initargs=(self.templates, os.getpid()))
            except Exception as exc:  # no processes here (a sandbox): parse in this one
                self.log.warning("parser_process_unavailable", error=f"{type(exc).__name__}: {exc}")
            else:
                with pool:
                    return self.ingest_backlog(pool, imap, batches, report)
        for uids in batches:
            if self.should_stop():
                break
            fetched = self.fetch(imap, uids)
            self.finish(imap, fetched, prepare_batch(fetched, self.templates, self.limit), report)

    def ingest_backlog(self, pool: ProcessPoolExecutor, imap: ImapMailbox, batches: list[list[int]],
                       report: PassReport) -> None:
        """A backlog: a helper process parses batch k while this one fetches
        batch k+1 and writes batch k-1, so both cores work. Commits and flags
        stay here, in order."""
        pending: deque = deque()
        for uids in batches:
            if self.should_stop():
                break
            fetched = self.fetch(imap, uids)
            pending.append((fetched, self.submit_prepare(pool, fetched)))
            if len(pending) > 1:
                self.finish_pending(imap, *pending.popleft(), report)
        while pending:
            self.finish_pending(imap, *pending.popleft(), report)

    def submit_prepare(self, pool: ProcessPoolExecutor, fetched: "Fetched") -> Future:
        try:
            return pool.submit(prepare_in_worker, fetched, self.limit)
        except BrokenProcessPool:  # the helper died on an earlier batch: the rest is parsed here
            done: Future = Future()
            done.set_result(prepare_batch(fetched, self.templates, self.limit))
            return done

    def finish_pending(self, imap: ImapMailbox, fetched: "Fetched", future: Future, report: PassReport) -> None:
        try:
            prepared = future.result()
        except BrokenProcessPool:
            # The helper died (killed, out of memory — perhaps on one of these
            # messages): each counts an attempt, so a message that kills the
            # parser is set aside after max_attempts; the others go in next pass.
            self.log.warning("parser_process_lost", uids=len(fetched.uids))
            prepared = [Prepared(uid, error="the parsing process died on this batch") for uid in fetched.uids]
        self.finish(imap, fetched, prepared, report)

    def fetch(self, imap: ImapMailbox, uids: list[int]) -> "Fetched":
        """Sizes first; the messages within the size limit with BODY.PEEK[].
        Messages the ledger already settled (a crash came between a commit and
        its flag) are not downloaded again, only flagged."""
        with self.db.transaction() as session:
            settled = ledger_settled(session, self.box.name, imap.uidvalidity, uids)
        todo = [uid for uid in uids if uid not in settled]
        sizes = imap.sizes(todo)
        too_large = {u: sizes[u] for u in todo if sizes.get(u, 0) > self.limit.size}
        raws = imap.bodies([u for u in todo if u not in too_large])
        # A message the server left out of its answer is recorded as failed
        # (tried again, set aside after its attempts), never passed over;
        # one that is gone from the folder (expunged meanwhile) has nothing to record.
        unsent = imap.existing([u for u in todo if u not in too_large and u not in raws])
        return Fetched(todo, raws, too_large, settled, unsent)

    def finish(self, imap: ImapMailbox, fetched: "Fetched", prepared: list[Prepared], report: PassReport) -> None:
        """Write a prepared batch, then flag what it settled."""
        results, settled = self.persist_batch(imap.uidvalidity, fetched.uids, prepared)
        for uid, result in results.items():
            report.counts[result.outcome] += result.reason != UNRECORDED  # said apart, in report.unrecorded
            report.repaired += bool(result.warnings) and result.outcome is not Outcome.FAILED
            self.log_result(uid, result)
        report.done += len(fetched.uids) + len(fetched.settled)
        if report.total > self.config.ingest.batch_size:  # a long pass shows its progress
            self.log.info("pass_progress", done=report.done, total=report.total)
        if self.on_progress is not None:
            self.on_progress(report)
        seen = sorted(fetched.settled | settled) + [uid for uid, result in results.items() if result.outcome.is_final]
        try:
            imap.mark_seen(seen)
        except ImapError as exc:
            # The ledger already keeps these from becoming leads twice; they are
            # flagged on a later pass.
            self.log.warning("flagging_failed", error=str(exc), uids=len(seen))
        report.unrecorded += [uid for uid, result in results.items() if result.reason == UNRECORDED]

    def persist_batch(
        self, uidvalidity: int, uids: list[int], prepared: list[Prepared]
    ) -> tuple[dict[int, Result], set[int]]:
        """The whole batch in one transaction and a few statements; if that
        fails, again one message at a time, so the one at fault is found and
        recorded as failed while the others go in."""
        try:
            return self.write_batch(uidvalidity, uids, prepared, one_by_one=False)
        except Exception as exc:
            if connection_lost(exc):
                raise  # the database itself is gone: the whole batch stays unread
            self.log.warning("batch_retried_one_by_one", error=describe_error(exc), uids=len(prepared))
            return self.write_batch(uidvalidity, uids, prepared, one_by_one=True)

    def write_batch(
        self, uidvalidity: int, uids: list[int], prepared: list[Prepared], one_by_one: bool
    ) -> tuple[dict[int, Result], set[int]]:
        now = self.clock()
        with self.db.transaction() as session:
            rotation = lock_rotation(session, self.settings.role)
            # Read the ledger again under the lock: another worker may have settled
            # some meanwhile, or set one aside (its last attempt was theirs).
            known = ledger_entries(session, self.box.name, uidvalidity, [p.uid for p in prepared])
            settled = {uid for uid, e in known.items() if Outcome(e.outcome).is_final}
            set_aside = {uid for uid, e in known.items()
                         if e.outcome == Outcome.FAILED and e.attempts >= self.max_attempts}
            todo = [p for p in prepared if p.uid not in settled and p.uid not in set_aside]
            if one_by_one:
                results = self.write_one_by_one(session, rotation, uidvalidity, todo, known, now)
            else:
                results = self.decide_and_write(session, rotation, uidvalidity, todo, known, now)
            if not self.box.unread_only and uids:
                self.ceiling = ceiling(self.ceiling, results)
                advance_last_uid(session, self.box.name, uidvalidity,
                                 max(uids) if self.ceiling is None else min(max(uids), self.ceiling), self.box.folder)
        return results, settled

    def write_one_by_one(self, session, rotation, uidvalidity: int, todo: list[Prepared], known: dict,
                         now) -> dict[int, Result]:
        results: dict[int, Result] = {}
        for item in todo:
            try:
                with session.begin_nested():
                    results |= self.decide_and_write(session, rotation, uidvalidity, [item], known, now)
                continue
            except Exception as exc:
                if connection_lost(exc):
                    raise
                error = describe_error(exc)
            # This message only: rolled back, recorded as failed — with what
            # the message said if the database takes it, else bare.
            for attempt in (Prepared(item.uid, item.message, error=error), Prepared(item.uid, error=error)):
                try:
                    with session.begin_nested():
                        results |= self.decide_and_write(session, rotation, uidvalidity, [attempt], known, now)
                    break
                except Exception as exc:
                    if connection_lost(exc):
                        raise
                    error = describe_error(exc)
            else:  # not even "failed" went in
                if item.uid in known:  # its earlier row stands: it is tried again like any failed message
                    results[item.uid] = Result(Outcome.FAILED, error=error)
                else:  # no row at all: it must not be passed over
                    self.log.error("message_unrecorded", uid=item.uid, error=error)
                    results[item.uid] = Result(Outcome.FAILED, error=error, reason=UNRECORDED)
        return results

    def decide_and_write(self, session, rotation, uidvalidity: int, items: list[Prepared], known: dict,
                         now) -> dict[int, Result]:
        batch = LeadBatch(session, self.settings, rotation, now, self.rules.render_title)
        replies = []
        batch.load([i.message for i in items if i.message], {i.uid: known[i.uid] for i in items if i.uid in known})
        # Contacts a message may be about: its own, those an owner's mail is addressed to, a forward's.
        batch.load_contacts([i.draft.contact for i in items if i.draft and i.draft.contact]
                            + [r for i in items if i.message and i.draft for r in i.message.recipients]
                            + [i.forwarded.draft.contact for i in items if i.forwarded and i.forwarded.draft.contact])
        for item in items:
            ref = MessageRef(self.box.name, uidvalidity, item.uid)
            if item.error:
                added = self.max_attempts if item.too_large else 1
                reason = "too large" if item.too_large else None
                attempts = batch.attempts(item.uid) + added
                if reason is None and attempts >= self.max_attempts:
                    reason = f"set aside after {attempts} attempts"
                batch.add_outcome(ref, Result(Outcome.FAILED, error=item.error, reason=reason), item.message, added)
            elif item.not_lead:
                batch.add_outcome(ref, Result(Outcome.NOT_LEAD, reason=item.not_lead), item.message)
            elif self.reply_settings and is_reply(item.message, batch.is_owner, self.reply_settings.addresses):
                replies.append(batch.add_outcome(ref, Result(Outcome.NOT_LEAD, reason="reply"), item.message))
            else:
                batch.add_lead_message(ref, item.message, item.draft, item.forwarded)
        if replies and self.rules.deals.onboarding:  # /won takes the onboarding turn: its lock before any lead's
            lock_rotation(session, self.rules.deals.onboarding.role)
        for reply in replies:  # after every decision (a command may take a turn), before the write
            self.run_reply(session, reply, now)
        decided = batch.write()
        touched = batch.touched()
        if touched and self.rules.deals.onboarding and self.rules.deals.won in {m.to for m in self.rules.deals.moves}:
            lock_rotation(session, self.rules.deals.onboarding.role)  # a deal won by mail: the turn before the lead
        for change in record_mail(session, self.rules, touched, now):
            for blocked in change.of(AutomationBlocked):
                self.log.info("lead_not_moved", lead_id=change.lead_id, to=blocked.to, needs=list(blocked.missing))
            if change.of(StatusChanged):
                self.log.info("lead_moved", lead_id=change.lead_id, by="automation",
                              to=[e.new for e in change.of(StatusChanged)])
            for stage in change.of(StageChanged):
                self.log.info("deal_moved", lead_id=change.lead_id, by="automation", to=stage.new)
        return {d.ref.uid: d.result() for d in decided}

    def run_reply(self, session, reply, now) -> None:
        """An owner's reply to a leadtap email: its commands run (``core.use_cases.reply_changes``)."""
        handled = handle_reply(session, self.rules, self.reply_settings, reply.message, self.box.name, now)
        reply.reason, reply.lead = handled.reason, handled.lead_id
        log = self.log.warning if handled.refused else self.log.info
        log("reply_refused" if handled.refused else "reply_handled", uid=reply.ref.uid, lead_id=handled.lead_id,
            sender=reply.message.sender.email if reply.message.sender else None, reason=handled.reason)

    def log_result(self, uid: int, result: Result) -> None:
        fields = {"uid": uid, "lead_id": result.lead_id, "outcome": result.outcome.value}
        if result.warnings:
            fields["warnings"] = list(result.warnings)
        if result.outcome is Outcome.FAILED:
            self.log.warning("message_failed", error=result.error, reason=result.reason, **fields)
        else:
            self.log.info("message_" + result.outcome.value, reason=result.reason, **fields)


UNRECORDED = "not recorded: read again next pass"


def ceiling(current: int | None, results: dict[int, Result]) -> int | None:
    """The highest the mailbox's last UID may go in this pass: just below
    the first message left without a ledger row (the messages after it are
    recorded all the same; the next pass reads from it again, and skips them)."""
    unrecorded = [uid for uid, result in results.items() if result.reason == UNRECORDED]
    if not unrecorded:
        return current
    return min(unrecorded) - 1 if current is None else min(current, min(unrecorded) - 1)


def connection_lost(exc: BaseException) -> bool:
    """The database connection itself failed (not this message's data)."""
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated) or isinstance(exc, DatabaseUnavailable)


def describe_error(exc: BaseException) -> str:
    """An error for the ledger and the log: the driver's first line, never the
    SQL and its parameters (they hold message contents)."""
    if isinstance(exc, DBAPIError):
        return f"{type(exc.orig).__name__}: {describe_db_error(exc)}"
    return f"{type(exc).__name__}: {exc}"


def chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
