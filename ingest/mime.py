"""A MIME tree read the way mail clients read it, whatever it holds.

Bounded first: the standard library's header parsing is quadratic in a
field's size, so a field past ``MAX_FIELD_CHARS`` is cut for parsing (a
``References`` field keeps its end, where the newest ids stand), and a header
block past ``MAX_HEADER_BYTES`` keeps only the fields leadtap reads.

Then read: a message that decodes as sent is left to mail-parser, exactly as
before; one that does not (a broken structure, a charset label Python does
not know, bytes its charset cannot hold, broken base64) has its text repaired
here from the parts Python's parser recovered, and each repair is a warning.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email.header import Header, decode_header
from email.message import Message
from email.policy import Compat32
from typing import Iterator

from leadtap.ingest.charset import FALLBACK, decode_base64, decode_text, decode_unlabelled, resolve
from leadtap.ingest.deadline import Deadline
from leadtap.ingest.html import html_to_text

MAX_FIELD_CHARS = 64 * 1024
MAX_HEADER_BYTES = 256 * 1024
MAX_DEPTH = 1000  # no deeper than the parser itself can go (it recurses per level)
# The parser tests every line against every boundary open around it: a body
# of many lines inside many nested multiparts costs their product. Past this
# budget the structure is not parsed and the raw body is the text.
MAX_LINE_BOUNDARY_CHECKS = 40_000_000
BOUNDARY_PARAM_RE = re.compile(rb"boundary\s*=", re.IGNORECASE)
READ_FIELDS = {
    b"from", b"reply-to", b"subject", b"date", b"message-id", b"in-reply-to", b"references", b"return-path",
    b"content-type", b"content-transfer-encoding", b"mime-version", b"auto-submitted", b"x-autoreply",
    b"x-autorespond", b"precedence", b"list-id", b"x-leadtap", b"x-failed-recipients", b"to", b"cc", b"bcc",
    b"content-disposition", b"content-id", b"x-auto-response-suppress", b"sender",
}
# Fields a message has at most once (RFC 5322 §3.6, RFC 2045): a message with
# two of one is not what its signature vouches for (DKIM verifies the last).
ONCE_FIELDS = (b"from", b"sender", b"reply-to", b"to", b"cc", b"subject", b"date", b"message-id", b"in-reply-to",
               b"references", b"content-type")
# Defects after which the text read is not the text sent: the text is repaired.
REPAIRED_DEFECTS = {
    "StartBoundaryNotFoundDefect": "MIME: start boundary not found",
    "MultipartInvariantViolationDefect": "MIME: a multipart part holds no parts",
    "InvalidBase64CharactersDefect": None,  # said by the base64 repair itself
    "InvalidBase64PaddingDefect": None,
    "InvalidBase64LengthDefect": None,
    "CharsetDecodeDefect": None,  # said by the charset repair itself
}
BOUNDARY_LINE_RE = re.compile(rb"\A\s*--([^\s]{1,200})[ \t]*\r?$", re.MULTILINE)
BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
FIELD_NAME_RE = re.compile(rb"([!-9;-~]+)[ \t]*:")
C1_CONTROL_RE = re.compile("[\x80-\x9f]")
C1_BYTES_RE = re.compile(rb"[\x80-\x9f]")
WINDOWS_1252 = {"windows-1252", "cp1252", "x-cp1252"}
# Charsets whose text is written in ASCII escapes: their raw form is not their text.
SEVEN_BIT_CODECS = {"utf-7", "iso2022_jp", "iso2022_kr", "hz"}


class BoundedPolicy(Compat32):
    """compat32, with every header field (of every part) cut to
    ``MAX_FIELD_CHARS`` as it is parsed; the cut fields' names are collected."""

    cuts: list | None = None

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        if len(value) > MAX_FIELD_CHARS:
            keep_end = name.strip().lower() == "references"
            value = value[-MAX_FIELD_CHARS:] if keep_end else value[:MAX_FIELD_CHARS]
            self.cuts.append(name.strip())
        return name, value


@dataclass
class Tree:
    """A parsed message and what was repaired to read it."""

    root: Message
    body: bytes  # the raw bytes after the header block
    warnings: list[str] = field(default_factory=list)
    structure_read: bool = True  # False: only the headers were parsed; the raw body is the text


def parse_tree(raw: bytes) -> Tree:
    """The MIME tree, bounded. A structure nested too deeply for the parser
    keeps its headers; its text is then the raw body."""
    raw, dropped = bound_header_block(raw)
    body = body_bytes(raw)
    cuts: list[str] = []
    policy = BoundedPolicy(cuts=cuts)
    warnings = [f"header block over {MAX_HEADER_BYTES // 1024} KiB: {dropped} fields not read"] if dropped else []
    root = None
    if too_costly_to_parse(raw):
        warnings.append("MIME: too many nested parts for its size; the raw body is the text")
    else:
        try:
            root = email.message_from_bytes(raw, policy=policy)
        except RecursionError:
            warnings.append("MIME: nested too deeply to read; the raw body is the text")
    structure_read = root is not None
    if root is None:
        root = email.parser.BytesParser(policy=policy).parsebytes(raw, headersonly=True)
        root.set_payload("")
    warnings += [f"header {name} cut to {MAX_FIELD_CHARS // 1024} KiB" for name in dict.fromkeys(cuts)]
    return Tree(root, body, warnings, structure_read)


def too_costly_to_parse(raw: bytes) -> bool:
    boundaries = len(BOUNDARY_PARAM_RE.findall(raw))
    return boundaries > 1 and boundaries * raw.count(b"\n") > MAX_LINE_BOUNDARY_CHECKS


def bound_header_block(raw: bytes) -> tuple[bytes, int]:
    """Past ``MAX_HEADER_BYTES``, only the fields leadtap reads are kept in
    the top header block; returns the bytes to parse and the fields dropped."""
    if BLANK_LINE_RE.search(raw, 0, MAX_HEADER_BYTES) or len(raw) <= MAX_HEADER_BYTES:
        return raw, 0
    end = BLANK_LINE_RE.search(raw)
    head, rest = (raw[: end.start()], raw[end.start() :]) if end else (raw, b"")
    kept, dropped, size, keeping, late = [], 0, 0, True, set()
    for line in head.splitlines(keepends=True):
        if line[:1] not in (b" ", b"\t"):  # a new field
            found = FIELD_NAME_RE.match(line)
            name = found.group(1).lower() if found else None
            # Past the limit, one of each field leadtap reads (repeats cost time, not information).
            keeping = size < MAX_HEADER_BYTES or (name in READ_FIELDS and name not in late)
            if size >= MAX_HEADER_BYTES and keeping:
                late.add(name)
            dropped += not keeping
        if keeping:
            kept.append(line)
            size += len(line)
    return b"".join(kept).rstrip(b"\r\n") + rest, dropped


def repeated_fields(raw: bytes) -> tuple[str, ...]:
    """The fields of ``ONCE_FIELDS`` that the top header block holds more
    than once, counted in the raw bytes (whatever a bound cut from the parse)."""
    end = BLANK_LINE_RE.search(raw)
    head = raw[: end.start()] if end else raw
    seen: dict[bytes, int] = {}
    for line in head.splitlines():
        if line[:1] in (b" ", b"\t"):
            continue
        found = FIELD_NAME_RE.match(line)
        name = found.group(1).lower() if found else None
        if name in ONCE_FIELDS:
            seen[name] = seen.get(name, 0) + 1
    return tuple(name.decode("ascii") for name in ONCE_FIELDS if seen.get(name, 0) > 1)


def body_bytes(raw: bytes) -> bytes:
    found = BLANK_LINE_RE.search(raw)
    return raw[found.end() :] if found else b""


def walk(root: Message) -> Iterator[tuple[Message, int]]:
    """Every part with its depth, without recursion; parts below ``MAX_DEPTH`` are left out."""
    stack = [(root, 0)]
    while stack:
        part, depth = stack.pop()
        yield part, depth
        if part.is_multipart() and depth < MAX_DEPTH:
            stack.extend((child, depth + 1) for child in reversed(part.get_payload()))


def is_attachment(part: Message) -> bool:
    try:
        return part.get_content_disposition() == "attachment" or bool(part.get_filename())
    except (LookupError, ValueError):  # an RFC 2231 filename in a charset no codec knows, or with a NUL
        return True


def charset_of(part: Message) -> str | None:
    """The declared charset; None when it cannot even be read (RFC 2231
    parameters may name any charset, a NUL included)."""
    try:
        return part.get_content_charset()
    except (LookupError, ValueError):
        return None


def unreadable_as_sent(root: Message) -> str | None:
    """Why the message's text cannot be read as sent (a repair is needed), or None."""
    for part, _ in walk(root):
        if not part.is_multipart() and part.get_content_maintype() == "text":
            charset = charset_of(part)
            if charset and not decodes_as_declared(part, charset):
                return f"text not readable as {charset!r}"
        # Checked after decoding: base64 defects are found only then.
        for defect in part.defects:
            if type(defect).__name__ in REPAIRED_DEFECTS:
                return type(defect).__name__
    return None


def decodes_as_declared(part: Message, charset: str) -> bool:
    """The payload decodes in its charset as Python knows it, and reads the
    same as mail clients read it: ``iso-8859-1`` text holding C1 controls is
    windows-1252 text (what every mail client shows), and text in a charset
    of ASCII escapes (ISO-2022-JP, UTF-7) must be decoded, not kept as sent."""
    payload = part.get_payload(decode=True) or b""
    try:
        text = payload.decode(charset)
    except (LookupError, ValueError):  # UnicodeError, or a label Python cannot even look up (a NUL)
        return False
    codec = resolve(charset)
    if codec in SEVEN_BIT_CODECS:  # mail-parser would keep the escapes undecoded
        return text == payload.decode("ascii", "replace")
    return not (C1_CONTROL_RE.search(text) and codec == "cp1252")


def repaired_text(tree: Tree, deadline: Deadline) -> str:
    """The text of a message that cannot be read as sent: its text parts,
    decoded best-effort; else the parts found by a boundary the body uses but
    the headers do not declare; else the raw body. Warnings go on ``tree``."""
    for defect in dict.fromkeys(type(d).__name__ for part, _ in walk(tree.root) for d in part.defects):
        if REPAIRED_DEFECTS.get(defect):
            tree.warnings.append(REPAIRED_DEFECTS[defect])
    text = text_of_parts(tree.root, tree.warnings, deadline) if tree.structure_read else None
    if text is None and tree.structure_read:
        text = text_by_found_boundary(tree, deadline)
    if text is None:
        charset = charset_of(tree.root)
        decoded = decode_text(tree.body, charset)
        if tree.structure_read:
            tree.warnings.append("MIME: no readable text part; the raw body is the text")
        if warning := decoded.warning(charset):
            tree.warnings.append(warning)
        text = decoded.text
    return text.replace("\r\n", "\n")


def text_by_found_boundary(tree: Tree, deadline: Deadline) -> str | None:
    """Parts delimited by a boundary the body starts with but the headers do not name."""
    found = BOUNDARY_LINE_RE.match(tree.body[:4096])
    if not found:
        return None
    boundary = found.group(1).decode("ascii", "replace").replace('"', "")
    header = f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'.encode()
    try:
        root = email.message_from_bytes(header + tree.body, policy=BoundedPolicy(cuts=[]))
    except RecursionError:
        return None
    if not root.is_multipart() or not any("Content-Type" in part for part in root.get_payload() if isinstance(part, Message)):
        return None  # not MIME parts after all: the raw body is the better text
    text = text_of_parts(root, tree.warnings, deadline)
    if text is not None:
        tree.warnings.append("MIME: parts read by a boundary the headers do not declare")
    return text


def text_of_parts(root: Message, warnings: list[str], deadline: Deadline) -> str | None:
    """The plain-text parts joined; else the HTML parts as text; None when there is neither."""
    plain, html = [], []
    for part, _ in walk(root):
        deadline.check("reading the MIME parts")
        if part.is_multipart() or part.get_content_type() not in ("text/plain", "text/html") or is_attachment(part):
            continue
        text = part_text(part, warnings)
        if text:
            (plain if part.get_content_subtype() == "plain" else html).append(text)
    if plain:
        return "\n".join(plain)
    if html:
        return html_to_text("\n".join(html), deadline)
    return None


def own_text(root: Message, warnings: list[str], deadline: Deadline) -> str:
    """What the sender wrote: the first text part (else the first HTML part,
    as text), never inside an attached or forwarded message, never an
    attachment — the text a reply's commands are read from."""
    plain = html = None
    stack = [(root, 0)]
    while stack and plain is None:
        part, depth = stack.pop()
        deadline.check("reading the reply's text")
        if part.get_content_maintype() == "message" or (part is not root and is_attachment(part)):
            continue  # a forwarded message, an attached one, a file: not the sender's words
        if part.is_multipart():
            if depth < MAX_DEPTH:
                stack.extend((child, depth + 1) for child in reversed(part.get_payload()))
        elif part.get_content_type() == "text/plain":
            plain = part_text(part, warnings)
        elif part.get_content_type() == "text/html" and html is None:
            html = part_text(part, warnings)
    if plain is not None:
        return plain
    return html_to_text(html, deadline) if html else ""


def raw_body(part: Message) -> bytes:
    """A part's body as it came. (``get_payload()`` would decode it with the
    part's charset, which may be any string: a NUL in it raises.)"""
    payload = part._payload  # noqa: SLF001 (the stdlib keeps the undecoded body only here)
    if isinstance(payload, bytes):
        return payload
    return str(payload).encode("utf-8", "surrogateescape")


def holds_8bit(value: object) -> bool:
    """compat32 gives a field that holds undeclared 8-bit bytes as a
    ``Header``, whose text reads each of them as U+FFFD; any other as a str."""
    return isinstance(value, Header)


def field_text(value: object, warnings: list[str], name: str) -> str:
    """A header field as mail clients read it: undeclared 8-bit bytes as
    UTF-8 (RFC 6532: what internationalised mail sends, and what servers
    store as received), else as windows-1252 — a guess, and a warning."""
    if not holds_8bit(value):
        return str(value)
    sent = b"".join(data for data, _ in decode_header(value))  # a Header's chunks: the bytes as they came
    decoded = decode_unlabelled(sent)
    if decoded.charset == FALLBACK:
        warnings.append(f"{name}: 8-bit text not UTF-8, read as {FALLBACK}")
    return decoded.text


def part_text(part: Message, warnings: list[str]) -> str:
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if encoding == "base64":
        # Non-ASCII bytes in a base64 body are stray characters like any other.
        data, problem = decode_base64(raw_body(part))
        if problem:
            warnings.append(problem)
    else:
        data = part.get_payload(decode=True) or b""
    charset = charset_of(part)
    decoded = decode_text(data, charset)
    if warning := decoded.warning(charset):
        warnings.append(warning)
    elif decoded.charset == FALLBACK and charset not in WINDOWS_1252 and C1_BYTES_RE.search(data):
        warnings.append(f"{charset} text read as {FALLBACK}")
    return decoded.text
