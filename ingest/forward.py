"""The enquiry inside a forward: an owner forwards to a watched mailbox a
message that reached their own inbox, and the lead is the original sender's.

Two shapes, as mail clients make them:

- **attached** (``message/rfc822``: Outlook's and Gmail's "forward as
  attachment"): the attached message is read as any message is;
- **inline**: a marker line — Gmail's ``---------- Forwarded message
  ---------``, Outlook's ``-----Original Message-----`` or its ``From: …``
  block under a rule, Apple Mail's ``Begin forwarded message:``, and their
  German, French, Spanish and Lithuanian wordings — then the original's
  header lines (From, Date or Sent, Subject, To), a blank line, its body.

Whether the forward makes a lead is the intake's decision (only an owner's
forward of a non-owner's message does: ``core.rules.intake``); this only reads.
"""

from __future__ import annotations

import base64
import quopri
import re
from dataclasses import replace
from email.utils import parseaddr, parsedate_to_datetime
from datetime import datetime, timezone

from leadtap.core.rules.model import Address, IncomingMessage, valid_email
from leadtap.ingest.deadline import UNLIMITED, Deadline
from leadtap.ingest.mime import parse_tree, walk
from leadtap.ingest.parse import parse_message

# Fwd/FW (English), WG (German), TR (French), RV/ENC (Spanish, Portuguese), PD/I (Italian), VB (Swedish),
# Doorst (Dutch), VS (Norwegian, Danish; in Finnish a reply: the recipients check tells them apart), Persiųsta.
FORWARD_SUBJECT_RE = re.compile(r"^\s*(fwd?|fw|wg|tr|rv|enc|pd|i|vb|doorst|vs|persiųsta)\s*(\[\d+\])?\s*:",
                                re.IGNORECASE)
MARKER_RE = re.compile(  # [ \t], not \s: a run of blank lines must not be read again from each line
    r"^[ \t]*(-{2,}[ \t]*(forwarded message|original message|weitergeleitete nachricht|ursprüngliche nachricht"
    r"|message transféré|message d'origine|mensaje reenviado|mensaje original|persiųstas laiškas"
    r"|originalus laiškas)[ \t]*-{2,}|begin forwarded message:|anfang der weitergeleiteten nachricht:"
    r"|début du message réexpédié :?|_{10,})[ \t]*$",
    re.IGNORECASE | re.MULTILINE)
FROM_NAMES = ("from", "von", "de", "nuo")
DATE_NAMES = ("date", "sent", "datum", "gesendet", "envoyé", "enviado", "fecha", "data", "išsiųsta")
SUBJECT_NAMES = ("subject", "betreff", "objet", "asunto", "tema")
FIELD_RE = re.compile(r"^\s*\*?([^\s:*][^:*]{0,30}?)\*?\s*:\s*(.*)$")
MAILTO_RE = re.compile(r"\[mailto:([^\]]+)\][ \t]*$", re.IGNORECASE)  # searched: no lazy prefix to backtrack over
MAX_VALUE = 998  # a header field's line, as RFC 5322 bounds it: a longer value is cut before it is read
MAX_DEPTH = 5  # forwards of forwards, read down to the enquiry
MAX_MARKERS = 20  # marker-like lines tried before the forward is given up
ATTACHED_RE = re.compile(rb"message/rfc822", re.IGNORECASE)
MAX_FIELDS = 12  # a header block is short: past this, the lines are the body


def forwarded_original(raw: bytes, message: IncomingMessage,
                       deadline: Deadline = UNLIMITED) -> IncomingMessage | None:
    """The forwarded message inside ``message``, or None when it is no forward:
    a forward's subject (Fwd:, FW:, WG:, TR:, RV:, …) over a marker and the
    original's From, or an attached message. An Outlook reply quotes under
    the same marker, but its subject is a reply's."""
    if looks_forwarded(message):
        inline = inline_original(message)
        if inline is not None:
            return inline
    if ATTACHED_RE.search(raw):
        return attached_original(raw, deadline)
    return None


def attached_original(raw: bytes, deadline: Deadline) -> IncomingMessage | None:
    tree = parse_tree(raw)
    for part, _depth in walk(tree.root):
        if part.get_content_type() == "message/rfc822":
            try:
                original = parse_message(attached_bytes(part), deadline)
            except Exception:  # an attachment that does not read as a message: no forward
                return None
            return original if original.sender is not None else None
    return None


def attached_bytes(part) -> bytes:
    """The attached message as sent: as is (7bit, 8bit, binary, as RFC 2046
    says it must be), or decoded when a client encoded it anyway (base64,
    quoted-printable: the parser left it one headerless part)."""
    inner = part.get_payload()
    inner = inner[0] if isinstance(inner, list) and inner else inner
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64" and not inner.keys():
        return base64.b64decode(str(inner.get_payload()), validate=False)
    if encoding == "quoted-printable" and not inner.keys():
        return quopri.decodestring(str(inner.get_payload()).encode("ascii", "replace"))
    return inner.as_bytes()


def inline_original(message: IncomingMessage) -> IncomingMessage | None:
    """The original under the forward's first marker line that is followed
    by a readable From (a rule of underscores in a signature is passed by);
    a forward of a forward (its own subject a forward's: Ana forwarded it to
    Ben, who forwards it here) is read on down to the enquiry."""
    text, original = message.text, None
    for _ in range(MAX_DEPTH):
        found = block_under_marker(message, text)
        if found is None:
            return original
        original, text = found, found.text
        if not looks_forwarded(found):
            return original
    return original


def block_under_marker(message: IncomingMessage, text: str) -> IncomingMessage | None:
    for count, marker in enumerate(MARKER_RE.finditer(text)):
        if count >= MAX_MARKERS:
            return None
        lines = text[marker.end():].lstrip("\r\n").splitlines()
        fields, body_at = header_block(lines)
        sender = address_of(fields.get("from", ""))
        if sender is None:
            continue
        body = "\n".join(line[1:].lstrip() if line.startswith(">") else line for line in lines[body_at:]).strip()
        return replace(
            message, identity=f"{message.identity}/forwarded", message_id=None, sender=sender, reply_to=None,
            subject=fields.get("subject", "").strip(), date=date_of(fields.get("date", "")), text=body,
            in_reply_to=(), references=(), recipients=(), reply_text=None, attachments=(),
        )
    return None


def header_block(lines: list[str]) -> tuple[dict[str, str], int]:
    """The original's header fields (from, date, subject), by their names in
    any of the languages; where its body starts."""
    fields: dict[str, str] = {}
    index = 0
    while index < len(lines) and index < MAX_FIELDS:
        line = lines[index][:MAX_VALUE * 2].lstrip("> ").rstrip()
        if not line:
            if fields:
                return fields, index + 1
            index += 1
            continue
        found = FIELD_RE.match(line)
        if found is None:
            break
        name, value = found.group(1).strip().lower(), found.group(2).strip()[:MAX_VALUE]
        for key, names in (("from", FROM_NAMES), ("date", DATE_NAMES), ("subject", SUBJECT_NAMES)):
            if name in names:
                fields.setdefault(key, value)
        index += 1
    return fields, index


def address_of(value: str) -> Address | None:
    """``Jo Smith <jo@client.test>``, ``Jo Smith [mailto:jo@client.test]``, ``jo@client.test``."""
    value = value[:MAX_VALUE]
    mailto = MAILTO_RE.search(value)
    name, email = (value[:mailto.start()], mailto.group(1)) if mailto else parseaddr(value)
    if not valid_email(email):
        return None
    return Address(name.strip().strip('"').strip(), email.strip())


def date_of(value: str) -> datetime | None:
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def looks_forwarded(message: IncomingMessage) -> bool:
    """A subject a forward carries (Fwd:, FW:, WG:, TR:, RV:, …)."""
    return bool(FORWARD_SUBJECT_RE.match(message.subject or ""))
