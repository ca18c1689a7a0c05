"""Parse → classify → extract: the steps of ingest that need no database, so
they may run in a helper process while the main one fetches and writes.

Each message gets its own deadline; whatever a hostile message does to a
parser, it fails alone. The helper process ends with its parent.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
import signal
from dataclasses import dataclass, field
from typing import Callable

from leadtap.core.errors import MessageError
from leadtap.core.rules.model import Forwarded, IncomingMessage, LeadDraft
from leadtap.ingest.classify import not_a_lead
from leadtap.ingest.deadline import UNLIMITED, Deadline
from leadtap.ingest.extract import BoundTemplate, extract_lead
from leadtap.ingest.forward import forwarded_original
from leadtap.ingest.parse import parse_message


@dataclass
class Fetched:
    """One batch as the server gave it: raw messages, and the sizes of those too large."""

    uids: list[int]
    raws: dict[int, bytes]
    too_large: dict[int, int]
    settled: set[int] = field(default_factory=set)  # already in the ledger: only to be flagged
    unsent: set[int] = field(default_factory=set)  # still in the folder, but the server sent no body for them


@dataclass
class Prepared:
    """A fetched message after the steps that need no database."""

    uid: int
    message: IncomingMessage | None = None
    draft: LeadDraft | None = None
    not_lead: str | None = None
    error: str | None = None
    too_large: bool = False
    forwarded: Forwarded | None = None  # the enquiry inside a forward, should an owner have sent it


PR_SET_PDEATHSIG = 1
PARALLEL_FROM = 3  # batches: a smaller pass is not worth starting a process
_worker_templates: list[BoundTemplate] = []


@dataclass(frozen=True)
class Limits:
    size: int  # bytes: a larger message is not downloaded
    seconds: float  # to read one message: parse, classify, extract


def prepare_batch(fetched: Fetched, templates: list[BoundTemplate], limit: Limits,
                  clock: Callable[[], float] = time.monotonic) -> list[Prepared]:
    return [
        Prepared(uid, error=f"too large: {fetched.too_large[uid]} bytes, the limit is {limit.size}", too_large=True)
        if uid in fetched.too_large else
        Prepared(uid, error="the server sent no body for this message; it is asked again next pass")
        if uid in fetched.unsent else
        prepare_message(uid, fetched.raws[uid], templates, Deadline(limit.seconds, clock))
        for uid in fetched.uids
        if uid in fetched.too_large or uid in fetched.raws or uid in fetched.unsent
    ]


def prepare_message(uid: int, raw: bytes, templates: list[BoundTemplate], deadline: Deadline = UNLIMITED) -> Prepared:
    """Parse → classify → extract: the steps that need no database, within the message's deadline."""
    try:
        message = parse_message(raw, deadline)
    except MessageError as exc:
        return Prepared(uid, error=str(exc))
    except Exception as exc:  # whatever a hostile message does to a parser, it fails alone
        return Prepared(uid, error=f"cannot parse the message: {type(exc).__name__}: {exc}")
    try:
        reason = not_a_lead(message)
        if reason:
            return Prepared(uid, message, not_lead=reason)
        draft = extract_lead(message, templates)
        deadline.check("extracting the lead")
        original = forwarded_original(raw, message, deadline)
        if original is not None and not_a_lead(original):  # a forwarded bounce or out-of-office: no enquiry
            original = None
        forwarded = Forwarded(original, extract_lead(original, templates)) if original is not None else None
        deadline.check("reading the forwarded message")
        return Prepared(uid, message, draft=draft, forwarded=forwarded)
    except MessageError as exc:
        return Prepared(uid, message, error=str(exc))
    except Exception as exc:  # a bug in classification or extraction must not stop the batch
        return Prepared(uid, message, error=f"extraction failed: {type(exc).__name__}: {exc}")


def start_worker(templates: list[BoundTemplate], parent: int) -> None:
    """In the parsing process: keep the templates, and end with the parent."""
    _worker_templates[:] = templates
    end_with_parent(parent)


def end_with_parent(parent: int) -> None:
    """A parsing process whose parent was killed (SIGKILL, out of memory)
    would wait for work forever, and keep multiprocessing's resource tracker
    alive with it. The kernel kills it when the parent dies (Linux), and a
    thread that sees it orphaned ends it anywhere else."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)
    threading.Thread(target=watch_parent, args=(parent,), daemon=True, name="leadtap-parent-watch").start()


def watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)


def prepare_in_worker(fetched: Fetched, limit: Limits) -> list[Prepared]:
    return prepare_batch(fetched, _worker_templates, limit)
