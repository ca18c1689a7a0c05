"""Commands by reply: what an owner's answer to a leadtap email asks for.

Lines at the top of the reply that start with ``/`` are commands; the rest of
the new text (above the quoted email and the signature) is a note. A command
after the first line of note is note text: commands are only read where a
person typed them first, never from further down, from quoted text, or from
a forwarded message. In a digest, each command names its lead first
(``/status 12 Connected``).

    /status Connected            /assign ben@example.com | me | next
    /qualify                     /snooze 3d | 2026-12-01
    /disqualify Bad timing       /note Called, call back Friday
    /disqualify Other: moved the project to 2027
    /done 2                      (the task's number as the email lists it)
    /stage Proposal amount=12000 /won amount=5000 close_date=2026-12-01
    /lost Went with a competitor /help
    /field industry=Retail       /source Partner
    /call connected Spoke with Jo /meeting booked 2026-12-10 demo
    /away until 2026-12-20       /back

Plain code: the grammar only. Whether the reply may act is
``core.rules.reply_rules``; what each command does is ``core.use_cases.reply_changes``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo

from leadtap.core.rules.durations import parse_seconds
from leadtap.core.rules.lifecycle import DATE_RE, OUTCOMES

MAX_COMMANDS = 20
MAX_NOTE = 5000  # a note, a /note, a reason's text: clipped like free text
MAX_LINE = MAX_NOTE + 100  # a command line is read no further
MAX_INTRO = 500
NAMES = ("status", "qualify", "disqualify", "assign", "snooze", "note", "done", "stage", "won", "lost", "field",
         "source", "call", "meeting", "away", "back", "help")
ABOUT_THE_SENDER = ("help", "away", "back")  # name no lead, in a digest too
NEEDS_ARGUMENT = {"status": "a status", "disqualify": "a reason", "assign": "an owner's email, me or next",
                  "snooze": 'a duration ("3d") or a date (2026-12-01)', "note": "some text",
                  "done": "a task's number", "stage": "a stage", "lost": "a reason",
                  "field": "NAME=VALUE, e.g. /field industry=Retail", "source": "a source"}
HELP = """/status STATUS             move the lead (e.g. /status {status})
/qualify                   move it to the qualified status
/disqualify REASON         e.g. /disqualify {reason}, or /disqualify Other: what it was
/assign EMAIL | me | next  give it to another owner (next: the rotation's next)
/snooze 3d | 2026-12-01    no reminders until then
/note TEXT                 add a note (any text below the commands is a note too)
/done N                    mark the lead's task number N (as the email lists them) done
/stage STAGE [field=value] move its deal (e.g. /stage {stage} amount=12000)
/won [field=value]         close its deal as won
/lost REASON               close its deal as lost, e.g. /lost {lost}
/field NAME=VALUE          set a field (NAME= clears it), e.g. /field industry=Retail
/source SOURCE             change where the lead came from
/call [OUTCOME] [NOTE]     log a call: connected, no-answer, left-voicemail, busy, booked
/meeting [OUTCOME] [DAY] [NOTE]  log a meeting: booked 2026-12-10, completed, no-show
/away [until] 2026-12-20   out of the rotation until that day (or 2w; /away alone: until /back)
/back                      in the rotation again
/help                      this list
In a digest, name the lead first: /status 12 {status}"""

COMMAND_RE = re.compile(r"/([A-Za-z]+)(?:\s+(.*))?")
LEAD_RE = re.compile(r"#?(\d{1,18})(?:\s+(.*))?")
FIELD_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)")
FIELD_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_ -]{0,63}")
# Where the quoted email starts: "> ...", "On ... wrote:" (and its translations),
# the Outlook and forwarding separators, an Outlook header block.
QUOTE_START = re.compile(
    r"^(>|-{2,}\s*(original message|forwarded message|urspr.ngliche nachricht|message d'origine)"
    r"|_{10,}$|(from|van|von|de|nuo):\s.+@)", re.IGNORECASE)
WROTE = r"(wrote|schrieb|a écrit|escribió|schreef|rašė|scrisse|skrev|napisał)"
WROTE_RE = re.compile(WROTE + r"\s*:\s*$", re.IGNORECASE)  # "... wrote:" closing a line
INTRO_RE = re.compile(r"^(on|am|le|el|op|il)\s.*\b" + WROTE + r"\b.*:\s*$", re.IGNORECASE)  # "Am ... schrieb X <y>:"
SIGNATURE = "-- "


def help_text(statuses: tuple[str, ...] = (), reasons: tuple[str, ...] = (), stages: tuple[str, ...] = (),
              lost_reasons: tuple[str, ...] = ()) -> str:
    """The commands, with examples from the configured pipeline (the second
    status, the first reasons, the second stage): names that work here."""
    def example(names: tuple[str, ...], index: int, fallback: str) -> str:
        return names[min(index, len(names) - 1)] if names else fallback

    return HELP.format(status=example(statuses, 1, "Contacted"), reason=example(reasons, 0, "Bad timing"),
                       stage=example(stages, 1, "Proposal"), lost=example(lost_reasons, 0, "Went with a competitor"))


@dataclass(frozen=True)
class Command:
    name: str
    args: str  # what follows the command (and, in a digest, the lead's id)
    line: str  # as written, for the confirmation
    lead_id: int | None = None  # named in a digest


@dataclass(frozen=True)
class Parsed:
    commands: tuple[Command, ...]
    note: str | None
    errors: tuple[tuple[str, str], ...]  # (line, why it is not a command)
    beyond: int = 0  # command lines past MAX_COMMANDS: not run

    @property
    def not_run(self) -> tuple[str, str] | None:
        """The one line said for the command lines past the limit."""
        if not self.beyond:
            return None
        return (f"({self.beyond} more command line{'s' if self.beyond != 1 else ''})",
                f"not run: more than {MAX_COMMANDS} commands in one reply")


def parse_reply(text: str, digest: bool = False) -> Parsed:
    """The commands at the top of ``text``'s new part, and the note below them."""
    lines = new_text(text).splitlines()
    commands: list[Command] = []
    errors: list[tuple[str, str]] = []
    index = 0
    beyond = 0
    while index < len(lines) and (not lines[index].strip() or lines[index].lstrip().startswith("/")):
        line = lines[index].strip()
        index += 1
        if not line:
            continue
        if len(commands) + len(errors) >= MAX_COMMANDS:
            beyond += 1
            continue
        command, error = parse_line(line[:MAX_LINE], digest)
        if command is not None:
            commands.append(command)
        else:
            errors.append((line, error))
    note = "\n".join(lines[index:]).strip()
    return Parsed(tuple(commands), note[:MAX_NOTE] or None, tuple(errors), beyond)


def parse_line(line: str, digest: bool) -> tuple[Command | None, str]:
    match = COMMAND_RE.fullmatch(line)
    if match is None:
        return None, "a command is / and a word, e.g. /status Connected; /help lists them"
    name, args = match.group(1).lower(), " ".join((match.group(2) or "").split())[:MAX_NOTE]
    if name not in NAMES:
        return None, f"unknown command /{name}; /help lists them"
    lead_id = None
    if digest and name not in ABOUT_THE_SENDER:
        named = LEAD_RE.fullmatch(args)
        if named is None:
            return None, f"in a digest, name the lead first: /{name} 12 ..."
        lead_id, args = int(named.group(1)), named.group(2) or ""
    if not args and name in NEEDS_ARGUMENT:
        return None, f"/{name} needs {NEEDS_ARGUMENT[name]}"
    if name == "done" and not args.lstrip("#").isdigit():
        return None, f"/done needs a task's number, not {args!r}"
    return Command(name, args, line, lead_id), ""


def new_text(text: str) -> str:
    """The reply's own text: above the quoted email and the signature."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    for index, line in enumerate(lines):
        stripped = line.strip()
        if len(stripped) > MAX_INTRO:  # a quote's first line is short: a long one is text (and bounds the work)
            continue
        if line.rstrip("\n") == SIGNATURE or QUOTE_START.match(stripped) or INTRO_RE.match(stripped):
            return "\n".join(lines[:index])
        if WROTE_RE.search(stripped):
            start = index - 1 if index and lines[index - 1].strip().lower().startswith(("on ", "am ", "le ")) else index
            return "\n".join(lines[:start])
    return "\n".join(lines)


# --- arguments -----------------------------------------------------------------


def reason_and_note(args: str) -> tuple[str, str | None]:
    """``Other: moved the project to 2027`` → (Other, moved the project to 2027)."""
    reason, sep, note = args.partition(":")
    return reason.strip(), (note.strip() or None) if sep else None


def name_and_fields(args: str) -> tuple[str, dict[str, str]]:
    """``Proposal amount=12000`` → (Proposal, {amount: 12000}): trailing field=value words."""
    words = args.split()
    fields: dict[str, str] = {}
    while words and FIELD_RE.fullmatch(words[-1]):
        name, value = FIELD_RE.fullmatch(words.pop()).groups()
        fields.setdefault(name, value)
    return " ".join(words), dict(reversed(list(fields.items())))


def pick(given: str, known: tuple[str, ...]) -> str:
    """``given`` as configured when it matches one case-insensitively, else as given."""
    for name in known:
        if name.casefold() == given.casefold():
            return name
    return given


def when(text: str, zone: tzinfo) -> datetime:
    """``2026-12-10`` (its start) or ``2026-12-10 14:30`` in ``zone``, as UTC; ValueError says why not."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date or a time; e.g. 2026-12-10 or 2026-12-10 14:30") from None
    try:
        return (at if at.tzinfo else at.replace(tzinfo=zone)).astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{text!r} is out of range") from None


def contact_words(kind: str, args: str, zone: tzinfo) -> tuple[str | None, datetime | None, str | None]:
    """``/call connected Spoke with Jo`` → (connected, None, Spoke with Jo);
    ``/meeting booked 2026-12-10 demo`` → (booked, 2026-12-10 in ``zone``, demo):
    an outcome first when it is one, a date next, the rest a note."""
    words = args.split()
    outcome = words.pop(0).lower() if words and words[0].lower() in OUTCOMES.get(kind, ()) else None
    at = None
    if words and DATE_RE.fullmatch(words[0]):
        at = when(words.pop(0), zone)
    return outcome, at, " ".join(words) or None


def moment(text: str, now: datetime, zone: tzinfo) -> datetime:
    """``3d`` from now, or the start of a date in ``zone``; ValueError says why not."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None:
        try:
            return datetime.combine(day, time(0, 0), tzinfo=zone).astimezone(timezone.utc)
        except OverflowError:  # year 1 in a zone east of UTC
            raise ValueError(f"{text!r} is out of range") from None
    try:
        return now + timedelta(seconds=parse_seconds(text))
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}; or a date such as 2026-12-01") from None
