"""Raw bytes → ``IncomingMessage``, with mail-parser.

A message that cannot be read faithfully (broken MIME structure, unknown or
undecodable charset, broken base64) raises ``MessageError``: it is recorded as
failed and set aside rather than turned into a lead full of mojibake.
"""

from __future__ import annotations

import hashlib
import logging
import re
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser

import mailparser

from core.errors import MessageError
from core.model import Address, IncomingMessage

# mail-parser logs a warning for every content type it does not handle itself.
logging.getLogger("mailparser").setLevel(logging.ERROR)

# Defects that mean the text we would read is not the text that was sent.
FATAL_DEFECTS = {
    "CharsetDecodeDefect",
    "InvalidBase64CharactersDefect",
    "InvalidBase64PaddingDefect",
    "InvalidBase64LengthDefect",
    "StartBoundaryNotFoundDefect",
    "MultipartInvariantViolationDefect",
}
MESSAGE_ID_RE = re.compile(r"<[^<>\s]{1,990}>")
MAX_THREAD_IDS = 100  # a References header may be hostile: match a reply on its last hundred
CLASSIFY_HEADERS = (
    "auto-submitted",
    "x-autoreply",
    "x-autorespond",
    "precedence",
    "list-id",
    "x-leadtap",
    "x-failed-recipients",
)


def parse_message(raw: bytes) -> IncomingMessage:
    try:
        parsed = mailparser.parse_from_bytes(raw)
    except Exception as exc:  # mail-parser raises many kinds; all mean "unreadable"
        raise MessageError(f"cannot parse the message: {exc}") from exc
    mime = parsed.message
    check_defects(mime)
    message_id = first_message_id(mime.get("Message-ID"))
    sender = first_address(mime.get_all("From"))
    subject = decode(mime.get("Subject"))
    date_header = mime.get("Date")
    return IncomingMessage(
        identity=identity_of(raw, message_id, sender, date_header, subject),
        message_id=message_id,
        sender=sender,
        reply_to=first_address(mime.get_all("Reply-To")),
        subject=subject,
        date=parse_date(date_header),
        text=body_text(parsed),
        in_reply_to=tuple(MESSAGE_ID_RE.findall(str(mime.get("In-Reply-To") or "")))[:MAX_THREAD_IDS],
        # The newest references stand last; a thread's own ids are among them.
        references=tuple(MESSAGE_ID_RE.findall(str(mime.get("References") or "")))[-MAX_THREAD_IDS:],
        headers={name: str(mime.get(name)) for name in CLASSIFY_HEADERS if mime.get(name) is not None},
        content_type=mime.get_content_type(),
        return_path=return_path(mime),
    )


def check_defects(mime: Message) -> None:
    for part in mime.walk():
        for defect in part.defects:
            if type(defect).__name__ in FATAL_DEFECTS:
                raise MessageError(f"broken message: {type(defect).__name__}: {defect}")
        charset = part.get_content_charset()
        if charset and not part.is_multipart() and part.get_content_maintype() == "text":
            decode_part(part, charset)


def decode_part(part: Message, charset: str) -> None:
    payload = part.get_payload(decode=True) or b""
    try:
        payload.decode(charset)
    except LookupError:
        raise MessageError(f"unknown charset {charset!r}") from None
    except UnicodeDecodeError as exc:
        raise MessageError(f"text not valid in its charset {charset!r}: {exc.reason} at byte {exc.start}") from None
    except UnicodeError as exc:  # codecs such as "undefined" or "punycode" fail their own way
        raise MessageError(f"text cannot be decoded as {charset!r}: {exc}") from None


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


def first_address(values: list | None) -> Address | None:
    if not values:
        return None
    # Split first, decode after: an encoded name may hide a comma ("Müller, Jörg").
    for name, email in getaddresses([str(v) for v in values]):
        if email:
            return Address(name=decode(name), email=email.strip())
    return None


def return_path(mime: Message) -> str | None:
    value = mime.get("Return-Path")
    if value is None:
        return None
    return str(value).strip().strip("<>").strip()


def decode(value: object) -> str:
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value)))).strip()
    except (LookupError, UnicodeDecodeError, ValueError):
        return str(value).strip()


def parse_date(value: str | None):
    if not value:
        return None
    try:
        date = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return date if date.tzinfo else None


def body_text(parsed: "mailparser.MailParser") -> str:
    if parsed.text_plain:
        return "\n".join(parsed.text_plain).replace("\r\n", "\n")
    if parsed.text_html:
        return html_to_text("\n".join(parsed.text_html))
    return ""


# --- HTML → text -------------------------------------------------------------

BLOCK_TAGS = {
    "p", "div", "br", "tr", "li", "ul", "ol", "table", "tbody", "thead", "tfoot", "h1", "h2", "h3", "h4", "h5",
    "h6", "blockquote", "pre", "section", "article", "header", "footer", "dt", "dd", "dl", "hr", "address",
}
CELL_TAGS = {"td", "th"}
SKIP_TAGS = {"script", "style", "head", "title"}


class TextExtractor(HTMLParser):
    """Keeps paragraphs and table rows on lines of their own; cells of a row
    are joined with a space, so "Name | Jo" reads "Name Jo"."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skipping = 0
        self.in_pre = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "body":
            self.skipping = 0  # an unclosed <head> ends where <body> starts
        elif tag in SKIP_TAGS:
            self.skipping += 1
        elif tag in BLOCK_TAGS:
            self.end_line()
            self.in_pre += tag == "pre"
        elif tag in CELL_TAGS:
            self.current.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIP_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif tag in BLOCK_TAGS:
            self.end_line()
            self.in_pre -= tag == "pre" and self.in_pre > 0
        elif tag in CELL_TAGS:
            self.current.append(" ")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        if self.in_pre:
            *complete, rest = data.split("\n")
            for piece in complete:
                self.current.append(piece)
                self.end_line()
            self.current.append(rest)
        else:
            self.current.append(re.sub(r"\s+", " ", data))

    def end_line(self) -> None:
        line = re.sub(r"[ \t]+", " ", "".join(self.current).replace("\xa0", " ")).strip()
        if line:
            self.lines.append(line)
        self.current = []

    def text(self) -> str:
        self.end_line()
        return "\n".join(self.lines)


def html_to_text(html: str) -> str:
    extractor = TextExtractor()
    extractor.feed(html)
    extractor.close()
    return extractor.text()
