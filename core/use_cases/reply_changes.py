"""Owners act by reply: an authorised reply's commands run, each through the
same use cases as the command line, inside the ingest transaction that
records the message — so a reply seen twice (a crash, a second worker, a
copy in another mailbox) runs once: its identity is recorded with it.

1. ``core.rules.reply_rules`` decides whether the reply may act at all; one that
   may not is recorded (not a lead, with the reason) and gets no answer.
2. Each command runs in a savepoint: a refused one (the lifecycle's or the
   deal rules' words) changes nothing and the others still run.
3. The reply, every command's result, and the one confirmation it is owed
   (``core.store.notifications``, kind ``confirmation``) are written; the
   confirmation is sent after the transaction commits.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Callable, Mapping

from sqlalchemy import func, or_, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from leadtap.core.use_cases import changes
from leadtap.core.rules import reply_grammar
from leadtap.core.use_cases import deal_changes, owners
from leadtap.core.store import notifications
from leadtap.core.use_cases.changes import LeadRules
from leadtap.core.rules.reply_grammar import (FIELD_NAME_RE, Command, contact_words, moment, name_and_fields, pick,
                                              reason_and_note)
from leadtap.core.store.db import CommandReply, DigestToken, Lead, Notification, Opportunity, Owner
from leadtap.core.rules.lifecycle import Actor, Refused
from leadtap.core.rules.model import IncomingMessage, safe_message_id
from leadtap.core.rules.reply_rules import NotAuthorised, Person, ReplyPolicy, authorise, may_act
from leadtap.core.store.services import clip
from leadtap.core.rules.tokens import DIGEST, Token, carried
from leadtap.core.use_cases.views import open_task_list
from leadtap.core.rules.words import described


@dataclass(frozen=True)
class ReplySettings:
    policy: ReplyPolicy
    zone: tzinfo  # a /snooze date starts at midnight here
    addresses: frozenset[str] = frozenset()  # where replies come: [commands] address and [smtp] from
    confirmations_per_hour: int = 10  # to one sender: past it a reply runs unconfirmed (a loop ends)


@dataclass
class Handled:
    """What became of a reply: the ledger's reason, and its lead."""

    reason: str
    refused: bool = False
    lead_id: int | None = None


def is_reply(message: IncomingMessage, is_owner: Callable[[str], bool], addresses: frozenset[str]) -> bool:
    """A reply to a leadtap email, from an owner's address, to leadtap's
    address and to nobody but owners: for the commands. Anyone else's mail
    naming leadtap's email (a contact answering a forwarded copy), or an
    owner's mail to a contact (outreach, with leadtap in Cc), is ordinary
    mail: never read for commands."""
    if not carried(message.thread_ids) or message.sender is None:
        return False
    if not is_owner(message.sender.email.strip().lower()):
        return False
    recipients = set(message.recipients)
    return bool(recipients & addresses) and all(r in addresses or is_owner(r) for r in recipients)


def handle(session: Session, rules: LeadRules, settings: ReplySettings, message: IncomingMessage, mailbox: str,
           now: datetime) -> Handled:
    try:
        check_shape(message)
    except NotAuthorised as exc:
        return Handled(f"reply refused: {exc}", refused=True)
    key = content_key(message)
    if session.scalar(select(CommandReply.id).where(
            or_(CommandReply.identity == message.identity, CommandReply.content_key == key))) is not None:
        return Handled("reply: already handled")
    sender = message.sender.email.strip().lower() if message.sender else ""
    try:
        token = authorise(settings.policy, message.thread_ids, sender, person_of(session, sender),
                          message.auth_results, now)
        scope = check_scope(session, settings.policy, sender, token)
    except NotAuthorised as exc:
        return Handled(f"reply refused: {exc}", refused=True)
    parsed = reply_grammar.parse_reply(message.reply_text or "", digest=token.kind == DIGEST)
    actor = Actor(sender, "mail", admin=sender in settings.policy.admins)
    results = [result(line, False, why) for line, why in parsed.errors]
    for command in parsed.commands:
        results.append(run(session, rules, settings, token, scope, command, actor, now))
    if parsed.not_run:
        results.append(result(parsed.not_run[0], False, parsed.not_run[1]))
    if parsed.note and token.kind == DIGEST:
        results.append(result("(note)", False, "in a digest, a note names its lead: /note 12 ..."))
    elif parsed.note:
        results.append(run(session, rules, settings, token, scope, Command("note", parsed.note, "(note)"), actor,
                           now))
    if not results:
        results.append(result("(no command)", False, "nothing to do: /help lists the commands"))
    reply = record(session, message, key, mailbox, sender, token, results, now)
    applied = sum(r["applied"] for r in results)
    reason = f"reply: {applied} applied, {len(results) - applied} refused"
    return Handled(reason + confirm(session, settings, reply, parsed, message.headers, now), lead_id=reply.lead_id)


def check_shape(message: IncomingMessage) -> None:
    """A reply is one person's message as sent: one From address, each
    once-only field once — a copy with a field added on top (a new
    Message-ID, Subject or From above the signed ones) is refused, not run
    again."""
    if message.from_count != 1:
        raise NotAuthorised("a reply acts for one sender; its From names several")
    if message.repeated:
        raise NotAuthorised(f"it has more than one {', '.join(message.repeated)} field; a message has one")


def content_key(message: IncomingMessage) -> str:
    """A reply's identity as its sender wrote and signed it: From, Date (as
    a time: a signature's relaxed reading ignores its spaces), the email it
    answers and its raw body as DKIM reads it — not its Message-ID, which a
    copy may carry anew above the signed one, nor what unsigned headers make
    of the body (a charset, a transfer encoding). The same reply, however
    delivered or retouched, runs once."""
    key = "\x00".join([
        message.sender.email.strip().lower() if message.sender else "",
        message.date.isoformat() if message.date else "",
        " ".join(message.in_reply_to), " ".join(message.references),
        message.body_digest,
    ])
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def confirm(session: Session, settings: ReplySettings, reply: CommandReply, parsed: reply_grammar.Parsed,
            message_headers: Mapping[str, str], now: datetime) -> str:
    """Owe the sender one confirmation, unless the reply had no command line
    (a note alone, or an out-of-office's text: answering it could start a
    loop), asks for no automatic answer (``X-Auto-Response-Suppress``), or
    they were sent ``confirmations_per_hour`` in the last hour.
    Returns what the ledger adds to the reply's reason."""
    if not parsed.commands and not parsed.errors and not parsed.beyond:
        return "; no command, no confirmation"
    if "x-auto-response-suppress" in message_headers:
        return "; no confirmation (X-Auto-Response-Suppress: its sender asks for no automatic answer)"
    sent = session.scalar(select(func.count()).select_from(Notification).where(
        Notification.recipient == reply.sender, Notification.kind == notifications.CONFIRMATION,
        Notification.created_at > now - timedelta(hours=1)))
    if sent >= settings.confirmations_per_hour:
        return f"; confirmations paused: {sent} to {reply.sender} in the last hour"
    session.add(Notification(**notifications.pending_row(reply.lead_id, reply.sender, notifications.CONFIRMATION,
                                                        now), reply_id=reply.id))
    return ""


def person_of(session: Session, email: str) -> Person | None:
    owner = session.scalars(select(Owner).where(Owner.email == email)).one_or_none()
    return Person(owner.email, owner.active) if owner else None


def check_scope(session: Session, policy: ReplyPolicy, sender: str, token: Token) -> frozenset[int]:
    """The leads the reply may name: the token's lead, which must still be
    the sender's (or they an admin); for a digest, the leads it listed."""
    if token.kind != DIGEST:
        check_lead(session, policy, sender, token.lead_id, tell_owner=True)
        return frozenset({token.lead_id})
    listed = session.get(DigestToken, token.mac)
    if listed is None or listed.recipient != sender:
        raise NotAuthorised("the digest it answers is not on record (older than digest_token_max_age?)")
    return frozenset(listed.lead_ids)


def check_lead(session: Session, policy: ReplyPolicy, sender: str, lead_id: int, tell_owner: bool = False) -> None:
    """The lead still exists and is the sender's to change (or they are an
    admin). ``tell_owner``: the reason may name its owner (the ledger's, never
    mailed back)."""
    row = session.execute(select(Lead.id, Lead.pipeline, Owner.email, Owner.active)
                          .outerjoin(Owner, Owner.id == Lead.owner_id).where(Lead.id == lead_id)).one_or_none()
    if row is None:
        raise NotAuthorised(f"lead {lead_id} no longer exists")
    why = may_act(sender, policy.admins_of(row.pipeline), lead_id, row.email, bool(row.active), tell_owner)
    if why:
        raise NotAuthorised(why)


def run(session: Session, rules: LeadRules, settings: ReplySettings, token: Token, scope: frozenset[int],
        command: Command, actor: Actor, now: datetime) -> dict:
    """One command, in a savepoint: refused (in the rules' words) or done.
    The sender's right to the lead is checked again before each: an earlier
    ``/assign`` in the same reply ends it. The words go back to the sender:
    they say nothing of a lead the sender may not see."""
    lead_id = command.lead_id if command.lead_id is not None else token.lead_id
    if command.name == "help":
        return result(command.line, True, "the commands are listed below", lead_id)
    if command.name in ("away", "back"):
        return about_the_sender(session, settings, command, actor, now)
    if lead_id not in scope:
        return result(command.line, False, f"lead {lead_id} was not in the digest this answers", None)
    try:
        check_lead(session, settings.policy, actor.who, lead_id)
        with session.begin_nested():
            if command.name == "done":
                made = task_done(session, lead_id, command.args, actor, now, token)
            else:
                made = REPLY_COMMANDS[command.name](session, rules, settings, lead_id, command.args, actor, now)
    except (Refused, NotAuthorised, ValueError, OverflowError) as exc:
        return result(command.line, False, str(exc), lead_id)
    except DBAPIError:
        raise  # the database's trouble, not the command's: the batch is tried again
    except Exception as exc:  # hostile input reaching a case nobody foresaw: this command only
        return result(command.line, False, f"could not run ({type(exc).__name__}); nothing was changed", lead_id)
    if isinstance(made, str):  # a task done: said in words
        return result(command.line, True, made, lead_id)
    return result(command.line, True, described(made if isinstance(made, list) else [made]), lead_id)


def about_the_sender(session: Session, settings: ReplySettings, command: Command, actor: Actor,
                     now: datetime) -> dict:
    """``/away [until] DAY`` and ``/back``: the sender, in a reply to any leadtap email."""
    try:
        with session.begin_nested():
            if command.name == "back":
                words = owners.back(session, actor.who, actor, now)
            else:
                until = away_until(command.args, now, settings.zone)
                words = owners.away(session, actor.who, until, actor, now)
    except (Refused, ValueError, OverflowError) as exc:
        return result(command.line, False, str(exc))
    return result(command.line, True, words)


def away_until(args: str, now: datetime, zone: tzinfo) -> datetime | None:
    """``until 2026-12-20``, ``2026-12-20``, ``2w``; nothing: until /back."""
    words = args.split()
    if words and words[0].lower() == "until":
        if len(words) == 1:
            raise Refused("/away until needs a day (2026-12-20) or a duration (2w)")
        words = words[1:]
    return moment(" ".join(words), now, zone) if words else None


def result(line: str, applied: bool, words: str, lead_id: int | None = None) -> dict:
    return {"line": clip(line, 500), "applied": applied, "words": clip(words, 1000), "lead_id": lead_id}


def record(session: Session, message: IncomingMessage, key: str, mailbox: str, sender: str, token: Token,
           results: list[dict], now: datetime) -> CommandReply:
    """The reply and its results."""
    lead_id = token.lead_id if token.kind != DIGEST else next(
        (r["lead_id"] for r in results if r["applied"] and r["lead_id"]), None)  # a lead the sender may see
    exists = lead_id is not None and session.get(Lead, lead_id) is not None
    references = [r for r in message.references if safe_message_id(r)][-20:]
    reply = CommandReply(identity=message.identity, content_key=key, mailbox=mailbox, message_id=safe_message_id(message.message_id),
                         references=references, sender=sender,
                         subject=clip(message.subject, 998), lead_id=lead_id if exists else None,
                         digest=token.kind == DIGEST, results=results,
                         received_at=now)
    session.add(reply)
    session.flush()
    return reply


# --- the commands ----------------------------------------------------------------


def status(session, rules: LeadRules, settings, lead_id: int, args: str, actor: Actor, now: datetime):
    return changes.set_status(session, rules, lead_id, args, actor, now)  # picked among the lead's pipeline's


def qualify(session, rules: LeadRules, settings, lead_id: int, args: str, actor: Actor, now: datetime):
    pipeline = pipeline_of(session, rules, lead_id)
    if pipeline.qualified is None:
        raise Refused(f"no qualified status is configured (the {pipeline.name} pipeline's qualified)")
    return changes.set_status(session, rules, lead_id, pipeline.qualified, actor, now, note=args or None)


def disqualify(session, rules: LeadRules, settings, lead_id: int, args: str, actor: Actor, now: datetime):
    pipeline = pipeline_of(session, rules, lead_id)
    if pipeline.disqualified is None:
        raise Refused(f"no disqualified status is configured (the {pipeline.name} pipeline's disqualified)")
    reason, note = reason_and_note(args)
    return changes.set_status(session, rules, lead_id, pipeline.disqualified, actor, now,
                              pick(reason, pipeline.disqualify_reasons), note)


def pipeline_of(session, rules: LeadRules, lead_id: int):
    return rules.pipeline_of(changes.load_lead(session, lead_id))


def assign(session, rules: LeadRules, settings, lead_id: int, args: str, actor: Actor, now: datetime):
    to = actor.who if args.lower() == "me" else args.lower()
    return changes.reassign(session, rules, lead_id, to, actor, now)


def snooze(session, rules: LeadRules, settings: ReplySettings, lead_id: int, args: str, actor: Actor, now: datetime):
    return changes.snooze(session, rules, lead_id, moment(args, now, settings.zone), actor, now)


def note(session, rules: LeadRules, settings, lead_id: int, args: str, actor: Actor, now: datetime):
    return changes.note(session, rules, lead_id, args, actor, now)


def task_done(session, lead_id: int, args: str, actor: Actor, now: datetime, token: Token) -> str:
    """The lead's task number N as the email answered listed it: its open
    tasks when the email was sent, soonest due first — so a task closed or
    added since does not shift the numbers."""
    number = int(args.lstrip("#"))
    tasks = open_task_list(session, lead_id, as_of=token.issued_at)
    if not 1 <= number <= len(tasks):
        raise Refused(f"lead {lead_id} had {len(tasks)} open task{'s' if len(tasks) != 1 else ''} "
                      f"when the email was sent; there is no task {number}")
    task = changes.finish_task(session, tasks[number - 1]["id"], actor, now)
    return f"task done: {task.title}"


def stage(session, rules: LeadRules, settings, lead_id: int, args: str, actor: Actor, now: datetime):
    name, values = name_and_fields(args)
    return deal_changes.set_stage(session, rules, deal_of(session, lead_id), pick(name, rules.deals.stages), actor,
                                  now, values=values)


def won(session, rules: LeadRules, settings, lead_id: int, args: str, actor: Actor, now: datetime):
    if rules.deals.won is None:
        raise Refused("no won stage is configured ([opportunities] won)")
    _, values = name_and_fields(args)
    return deal_changes.set_stage(session, rules, deal_of(session, lead_id), rules.deals.won, actor, now,
                                  values=values)


def lost(session, rules: LeadRules, settings, lead_id: int, args: str, actor: Actor, now: datetime):
    if rules.deals.lost is None:
        raise Refused("no lost stage is configured ([opportunities] lost)")
    reason, note_text = reason_and_note(args)
    return deal_changes.set_stage(session, rules, deal_of(session, lead_id), rules.deals.lost, actor, now,
                                  pick(reason, rules.deals.lost_reasons), note_text)


def field(session, rules: LeadRules, settings, lead_id: int, args: str, actor: Actor, now: datetime):
    name, sep, value = args.partition("=")
    if not sep or not FIELD_NAME_RE.fullmatch(name.strip()):
        raise Refused("/field needs NAME=VALUE, e.g. /field industry=Retail")
    return changes.edit(session, rules, lead_id, {name.strip(): value.strip()}, None, actor, now)


def source(session, rules: LeadRules, settings, lead_id: int, args: str, actor: Actor, now: datetime):
    return changes.edit(session, rules, lead_id, {}, args.strip(), actor, now)


def call(session, rules: LeadRules, settings: ReplySettings, lead_id: int, args: str, actor: Actor, now: datetime):
    return contact(session, rules, settings, lead_id, "call", args, actor, now)


def meeting(session, rules: LeadRules, settings: ReplySettings, lead_id: int, args: str, actor: Actor,
            now: datetime):
    return contact(session, rules, settings, lead_id, "meeting", args, actor, now)


def contact(session, rules: LeadRules, settings: ReplySettings, lead_id: int, kind: str, args: str, actor: Actor,
            now: datetime):
    outcome, at, said = contact_words(kind, args, settings.zone)
    return changes.log_contact(session, rules, lead_id, kind, outcome, at or now, said, actor, now)


def deal_of(session: Session, lead_id: int) -> int:
    found = session.scalar(select(Opportunity.id).where(Opportunity.lead_id == lead_id))
    if found is None:
        raise Refused(f"lead {lead_id} has no deal yet (it gets one when qualified)")
    return found


REPLY_COMMANDS: dict[str, Callable] = {
    "status": status, "qualify": qualify, "disqualify": disqualify, "assign": assign, "snooze": snooze,
    "note": note, "stage": stage, "won": won, "lost": lost, "field": field, "source": source, "call": call,
    "meeting": meeting,
}
