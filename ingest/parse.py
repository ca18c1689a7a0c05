"""Raw bytes → ``IncomingMessage``, the way a mail client reads them.

The MIME tree is bounded and, when it does not decode as sent, repaired
(``ingest.mime``); mail-parser reads the rest. What was repaired becomes the
message's ``warnings``. A header leadtap does not strictly need that cannot
be read is a warning too. Only a message with no header block at all, or one
that takes longer than its deadline, raises ``MessageError``: it is recorded
as failed and set aside after its attempts.
"""

from __future__ import annotations

import binascii
import hashlib
import logging
import re
from datetime import datetime, timezone
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import Callable, TypeVar

import mailparser

from leadtap.core.rules import tokens
from leadtap.core.errors import MessageError
from leadtap.core.rules.model import MESSAGE_ID_RE, Address, IncomingMessage
from leadtap.ingest.charset import decode_text
from leadtap.ingest.deadline import UNLIMITED, Deadline
from leadtap.ingest.html import html_to_text
from leadtap.ingest.mime import (Tree, body_bytes, field_text, holds_8bit, is_attachment, own_text, parse_tree,
                                 repaired_text, repeated_fields, unreadable_as_sent, walk)

# mail-parser logs every content type it does not handle and every header it
# cannot decode; leadtap says what it repaired in the message's warnings.
logging.getLogger("mailparser").setLevel(logging.CRITICAL)

MAX_THREAD_IDS = 100  # a References header may be hostile: match a reply on its last hundred
CLASSIFY_HEADERS = (
    "auto-submitted",
    "x-autoreply",
    "x-autorespond",
    "precedence",
    "list-id",
    "x-leadtap",
    "x-failed-recipients",
    "x-auto-response-suppress",
)
MAX_AUTH_RESULTS = 20
MAX_ATTACHMENTS = 50
RUN_OF_SPACES_RE = re.compile(rb"[ \t]+")
LINE_END_RE = re.compile(rb"\r?\n")
ENCODED_WORD_RE = re.compile(r"=\?([^?]*)\?([qQbB])\?([^?]*)\?=")  # RFC 2047; no "?" inside: linear
FOLDING_RE = re.compile(r"\r?\n(?=[ \t])")
T = TypeVar("T")


def parse_message(raw: bytes, deadline: Deadline = UNLIMITED) -> IncomingMessage:
    try:
        return read_message(raw, deadline)
    except MessageError:
        raise
    except Exception as exc:  # a parser met something nobody foresaw: this message fails alone
        raise MessageError(f"cannot read the message: {type(exc).__name__}: {exc}") from exc


def read_message(raw: bytes, deadline: Deadline) -> IncomingMessage:
    tree = parse_tree(raw)
    mime = tree.root
    if not mime.keys():
        raise MessageError("no header block: this is not a mail message")
    deadline.check("parsing the MIME structure")
    text = read_text(tree, deadline)
    warnings = tree.warnings
    message_id = read(warnings, "Message-ID", lambda: first_message_id(mime.get("Message-ID")))
    answers = read(warnings, "In-Reply-To", lambda: names_a_token(mime), False)
    from_fields = read(warnings, "From", lambda: mime.get_all("From"))
    sender = read(warnings, "From", lambda: first_address(from_fields, warnings, "From"))
    subject_header = mime.get("Subject")
    # Decoded once: the subject and its identity share it, unless the field
    # holds 8-bit text, which the identity hashes as it always did.
    as_hashed = strictly_decoded(subject_header)
    subject = as_hashed if as_hashed is not None and not holds_8bit(subject_header) else read(
        warnings, "Subject", lambda: decode(subject_header, warnings, "Subject"), "")
    date_header = read(warnings, "Date", lambda: str(mime.get("Date") or "") or None)
    return IncomingMessage(
        identity=identity_of(raw, message_id, sender_as_hashed(from_fields, sender), date_header,
                             as_hashed if as_hashed is not None else str(subject_header or "").strip()),
        message_id=message_id,
        sender=sender,
        reply_to=read(warnings, "Reply-To", lambda: first_address(mime.get_all("Reply-To"), warnings, "Reply-To")),
        subject=subject,
        date=read(warnings, "Date", lambda: parse_date(date_header, warnings)),
        text=text,
        in_reply_to=read(warnings, "In-Reply-To", lambda: thread_ids(mime.get("In-Reply-To"))[:MAX_THREAD_IDS], ()),
        # The newest references stand last; a thread's own ids are among them.
        references=read(warnings, "References", lambda: thread_ids(mime.get("References"))[-MAX_THREAD_IDS:], ()),
        headers=read(warnings, "headers", lambda: classify_headers(mime, warnings), {}),
        content_type=read(warnings, "Content-Type", mime.get_content_type, "text/plain"),
        return_path=read(warnings, "Return-Path", lambda: return_path(mime, warnings)),
        recipients=read(warnings, "To", lambda: recipients(mime, warnings), ()),
        auth_results=read(warnings, "Authentication-Results", lambda: authentication_results(mime, warnings), ()),
        reply_text=read(warnings, "the reply's text", lambda: reply_text(mime, warnings, deadline) if answers else None),
        attachments=read(warnings, "attachments", lambda: attachment_names(mime, warnings), ()),
        from_count=read(warnings, "From", lambda: len(getaddresses([str(v) for v in mime.get_all("From") or []])), 0),
        # What only a reply to leadtap's email is checked for: the rest of the mail is spared the work.
        repeated=repeated_fields(raw) if answers else (),
        body_digest=body_digest(raw) if answers else "",
        warnings=tuple(dict.fromkeys(warnings)),
    )


def read(warnings: list[str], name: str, reader: Callable[[], T], default: T = None) -> T:
    """A header leadtap can do without: unreadable, it is left out with a warning."""
    try:
        return reader()
    except Exception as exc:  # whatever a hostile header does to a parser
        warnings.append(f"{name}: unreadable ({type(exc).__name__}), left out")
        return default


def read_text(tree: Tree, deadline: Deadline) -> str:
    """mail-parser's text when the message decodes as sent, else the repaired text."""
    parsed = None
    if tree.structure_read:
        try:
            parsed = mailparser.MailParser(tree.root)
        except Exception as exc:  # mail-parser gave up: the text is read without it
            tree.warnings.append(f"MIME: {type(exc).__name__} while parsing; the text is repaired")
    deadline.check("parsing the message")
    if parsed is not None and unreadable_as_sent(tree.root) is None:
        return body_text(parsed, deadline)
    return repaired_text(tree, deadline)


def recipients(mime: Message, warnings: list[str]) -> tuple[str, ...]:
    """The To, Cc and Bcc addresses (a sent copy keeps its Bcc), lower-cased; the first hundred."""
    values = [field_text(v, warnings, name) for name in ("To", "Cc", "Bcc") for v in (mime.get_all(name) or [])]
    found = dict.fromkeys(email.strip().lower() for _, email in getaddresses(values) if "@" in email)
    return tuple(found)[:MAX_THREAD_IDS]


def attachment_names(mime: Message, warnings: list[str]) -> tuple[str, ...]:
    """The attachments' file names, as sent (RFC 2231 and encoded words read); the first fifty."""
    names = []
    for part, _depth in walk(mime):
        if len(names) >= MAX_ATTACHMENTS:
            break
        if part is not mime and is_attachment(part):
            name = field_text(part.get_filename() or "", warnings, "attachment name").strip()
            names.append(name[:200])
    return tuple(name for name in names if name)


def names_a_token(mime: Message) -> bool:
    """Whether the message answers a leadtap email: a reply token in In-Reply-To or References."""
    named = list(thread_ids(mime.get("In-Reply-To"))) + list(thread_ids(mime.get("References")))
    return bool(tokens.carried(named[:MAX_THREAD_IDS * 2]))


def reply_text(mime: Message, warnings: list[str], deadline: Deadline) -> str:
    """The sender's own text, for a message answering a leadtap email: its
    commands are read from there."""
    return own_text(mime, warnings, deadline)


def authentication_results(mime: Message, warnings: list[str]) -> tuple[tuple[int, str], ...]:
    """The ``Authentication-Results`` fields, topmost (the last server's)
    first, each with its position among all the header's fields (what lies
    between two of them ends a run: ``core.rules.reply_rules``); the first twenty."""
    found = ((position, value) for position, (name, value) in enumerate(mime.items())
             if name.strip().lower() == "authentication-results")
    return tuple((position, " ".join(field_text(value, warnings, "Authentication-Results").split()))
                 for position, value in found)[:MAX_AUTH_RESULTS]


def body_digest(raw: bytes) -> str:
    """The raw body as DKIM's relaxed canonicalisation reads it (RFC 6376
    §3.4.4: runs of spaces one space, none at a line's end, no empty lines
    at the end), hashed: what a signature vouches for, whatever the headers
    it leaves unsigned (a charset, a transfer encoding) say of it."""
    lines = [RUN_OF_SPACES_RE.sub(b" ", line).rstrip(b" ") for line in LINE_END_RE.split(body_bytes(raw))]
    while lines and not lines[-1]:
        lines.pop()
    return hashlib.sha256(b"\r\n".join(lines)).hexdigest()


def classify_headers(mime: Message, warnings: list[str]) -> dict[str, str]:
    return {name: field_text(mime.get(name), warnings, name) for name in CLASSIFY_HEADERS if mime.get(name) is not None}


def thread_ids(value: object) -> tuple[str, ...]:
    """The ids a field names. Ids (and the Date) are read as compat32 reads
    them, an undeclared 8-bit byte U+FFFD, not as text: an id is compared
    with the ids stored before, and hashed into the identity with the Date."""
    return tuple(MESSAGE_ID_RE.findall(str(value or "")))


def identity_of(raw: bytes, message_id: str | None, sender: Address | None, date: str | None, subject: str) -> str:
    """The same message seen twice has the same identity. Message-ID alone is
    not enough (some senders reuse them), so sender, date and subject count too;
    without a Message-ID the raw bytes decide."""
    if message_id:
        key = "\x00".join([message_id, sender.email.lower() if sender else "", (date or "").strip(), subject])
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    return hashlib.sha256(raw).hexdigest()


def first_message_id(value: object) -> str | None:
    if value is None:
        return None
    found = MESSAGE_ID_RE.search(str(value))
    return found.group(0) if found else (str(value).strip() or None)


def first_address(values: list | None, warnings: list[str], field: str) -> Address | None:
    if not values:
        return None
    # Split first, decode after: an encoded name may hide a comma ("Müller, Jörg").
    for name, email in getaddresses([field_text(v, warnings, field) for v in values]):
        if email:
            return Address(name=decode(name, warnings, "a display name"), email=email.strip())
    return None


def sender_as_hashed(from_fields: list | None, sender: Address | None) -> Address | None:
    """The sender as identities have always hashed it: a From field holding
    undeclared 8-bit bytes as compat32 reads it (each such byte U+FFFD), so a
    message seen before they were read as text is not a second lead."""
    if not any(holds_8bit(value) for value in from_fields or ()):
        return sender
    return read([], "From", lambda: first_address([str(value) for value in from_fields], [], "From"))


def return_path(mime: Message, warnings: list[str]) -> str | None:
    value = mime.get("Return-Path")
    if value is None:
        return None
    return field_text(value, warnings, "Return-Path").strip().strip("<>").strip()


def decode(value: object, warnings: list[str], what: str) -> str:
    """A header's encoded words decoded; where their charset fails, best-effort
    as for body text; where they are malformed, the header as sent. A field
    holding 8-bit text is read as text first (``field_text``)."""
    if value is None:
        return ""
    if holds_8bit(value) or not str(value).isascii():
        return decode_8bit(field_text(value, warnings, what), warnings, what)
    strict = strictly_decoded(value)
    if strict is not None:
        return strict
    try:
        chunks = decode_header(str(value))
    except (HeaderParseError, ValueError):
        warnings.append(f"{what}: malformed encoded words, kept as sent")
        return str(value).strip()
    pieces = []  # well-formed, but a charset failed: each chunk best-effort, as body text
    for data, charset in chunks:
        decoded = decode_text(data, charset) if isinstance(data, bytes) else None
        pieces.append(decoded.text if decoded else data)
        if decoded and (warning := decoded.warning(charset)):
            warnings.append(f"{what}: {warning}")
    return "".join(pieces).strip()


def decode_8bit(text: str, warnings: list[str], what: str) -> str:
    """A field sent as 8-bit text (read by ``field_text``), unfolded, with
    its encoded words decoded as body text is and the space between two of
    them dropped (RFC 2047 §6.2). email.header cannot: it escapes the text
    around the words."""
    parts = ENCODED_WORD_RE.split(FOLDING_RE.sub("", text))  # text, then charset, encoding, word, text, …
    pieces = [parts[0]]
    for at in range(1, len(parts), 4):
        charset, encoding, word, after = parts[at : at + 4]
        pieces.append(word_text(charset, encoding, word, warnings, what))
        pieces.append("" if at + 4 < len(parts) and not after.strip() else after)
    return "".join(pieces).strip()


def word_text(charset: str, encoding: str, word: str, warnings: list[str], what: str) -> str:
    """One encoded word decoded as body text is; malformed, kept as sent."""
    data = word.encode("utf-8")  # 8-bit text inside a word stays as it came
    try:
        if encoding in "qQ":
            data = binascii.a2b_qp(data, header=True)
        else:  # missing padding added, as email.header does
            data = binascii.a2b_base64(data + b"=" * (-len(data) % 4))
    except binascii.Error:
        warnings.append(f"{what}: malformed encoded words, kept as sent")
        return f"=?{charset}?{encoding}?{word}?="
    label = charset.split("*")[0]  # an RFC 2231 language follows the charset
    decoded = decode_text(data, label)
    if warning := decoded.warning(label):
        warnings.append(f"{what}: {warning}")
    return decoded.text


def strictly_decoded(value: object) -> str | None:
    """A header's encoded words decoded in their own charsets, or None when
    that fails (malformed, or a charset Python cannot decode). It is also the
    subject as identities have always hashed it (kept as sent when this
    fails), so a message seen before an upgrade never becomes a second lead."""
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value)))).strip()
    except Exception:  # malformed or undecodable: the caller repairs it, or hashes it as sent
        return None


def parse_date(value: str | None, warnings: list[str]) -> datetime | None:
    """An aware date that can be stored, or None (the time received is used)."""
    if not value:
        return None
    try:
        date = parsedate_to_datetime(value)
        if date.tzinfo is None:
            return None
        date.astimezone(timezone.utc)  # a year-9999 date with a negative offset does not fit
    except (TypeError, ValueError, IndexError, OverflowError):
        warnings.append(f"Date: {value[:60]!r} is not a date, the time received is used")
        return None
    return date


def body_text(parsed: "mailparser.MailParser", deadline: Deadline) -> str:
    if parsed.text_plain:
        return "\n".join(parsed.text_plain).replace("\r\n", "\n")
    if parsed.text_html:
        return html_to_text("\n".join(parsed.text_html), deadline)
    return ""
