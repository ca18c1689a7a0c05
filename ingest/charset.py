"""Text decoded the way browsers and mail clients decode it.

A charset label is resolved with the WHATWG Encoding Standard's table (from
``webencodings``): ``gb2312`` reads as GB18030, ``iso-8859-1`` and ``ascii``
as windows-1252, ``ks_c_5601-1987`` as windows-949, ``x-sjis`` as
windows-31J, ``utf8`` as UTF-8. A few labels that mail uses and the web does
not (UTF-7, ISO-2022-KR, HZ, DOS code pages) are read with Python's codecs
rather than the standard's "replacement" decoder. What a known charset still
cannot decode becomes U+FFFD and is counted; an unknown label, or none, is
read as UTF-8 when it is valid UTF-8, else as windows-1252 (which decodes
every byte).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import threading
from dataclasses import dataclass

import webencodings

# The decoder the standard means, where Python's codec of the same name is narrower.
WHATWG_DECODERS = {"gbk": "gb18030", "gb18030": "gb18030", "windows-1252": "cp1252"}
# Mail charsets the web table lacks or maps to its "replacement" decoder.
MAIL_LABELS = {
    "utf-7": "utf-7", "utf7": "utf-7", "unicode-1-1-utf-7": "utf-7", "csunicode11utf7": "utf-7",
    "unicode-2-0-utf-7": "utf-7", "x-unicode-2-0-utf-7": "utf-7",
    "iso-2022-kr": "iso2022_kr", "csiso2022kr": "iso2022_kr", "hz-gb-2312": "hz",
    "cp437": "cp437", "ibm437": "cp437", "cp850": "cp850", "ibm850": "cp850",
}
FALLBACK = "windows-1252"
BASE64_JUNK_RE = re.compile(rb"[^A-Za-z0-9+/]")

_replaced = threading.local()


def _replace_and_count(error: UnicodeDecodeError) -> tuple[str, int]:
    _replaced.count = getattr(_replaced, "count", 0) + 1
    return "\ufffd", error.end


def _c1_controls(error: UnicodeDecodeError) -> tuple[str, int]:
    """windows-1252 as the standard defines it: the five bytes Python's cp1252
    leaves undefined read as the C1 controls of the same number."""
    return "".join(chr(b) for b in error.object[error.start : error.end]), error.end


codecs.register_error("leadtap-replace", _replace_and_count)
codecs.register_error("leadtap-c1", _c1_controls)


@dataclass(frozen=True)
class Decoded:
    text: str
    charset: str  # the decoder used, e.g. "gb18030"
    replaced: int = 0  # characters the charset could not decode, now U+FFFD
    guessed: bool = False  # the label was unknown or missing: the fallback chose

    def warning(self, label: str | None) -> str | None:
        """What a user should know about this text, or None."""
        if self.guessed and (label or self.charset != "utf-8"):
            said = f"unknown charset {label!r}" if label else "text without a charset"
            return f"{said}: read as {self.charset}"
        if self.replaced:
            plural = "s" if self.replaced != 1 else ""
            return f"{label or self.charset} text: {self.replaced} character{plural} replaced"
        return None


def resolve(label: str | None) -> str | None:
    """The Python codec that reads ``label``, or None when the label is unknown."""
    if not label:
        return None
    key = label.strip().strip("\"'").lower()
    if key in MAIL_LABELS:
        return MAIL_LABELS[key]
    encoding = webencodings.lookup(key)
    if encoding is None or encoding.name == "replacement":
        return None
    codec = WHATWG_DECODERS.get(encoding.name, encoding.codec_info.name)
    try:
        codecs.lookup(codec)
    except LookupError:  # x-user-defined: a codec of webencodings' own, for web pages only
        return None
    return codec


BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def decode_text(data: bytes, label: str | None) -> Decoded:
    """``data`` as text: a byte-order mark first (as the standard says), then the label."""
    codec = resolve(label)
    for bom, named in BOMS:
        if data.startswith(bom):
            codec, data = named, data[len(bom) :]
            break
    if codec is None:
        return decode_unlabelled(data)
    if codec == "cp1252":
        return Decoded(data.decode("cp1252", "leadtap-c1"), FALLBACK)
    try:
        return Decoded(data.decode(codec), codec)
    except UnicodeDecodeError:
        pass
    _replaced.count = 0
    text = data.decode(codec, "leadtap-replace")
    return Decoded(text, codec, replaced=_replaced.count)


def decode_unlabelled(data: bytes) -> Decoded:
    try:
        return Decoded(data.decode("utf-8"), "utf-8", guessed=True)
    except UnicodeDecodeError:
        return Decoded(data.decode("cp1252", "leadtap-c1"), FALLBACK, guessed=True)


def decode_base64(data: bytes) -> tuple[bytes, str | None]:
    """What decodes of a base64 body: stray characters are skipped, missing
    padding added, a dangling last character dropped. Returns the bytes and
    a warning when anything was repaired."""
    core = data.translate(None, b"\r\n\t ").rstrip(b"=")
    clean = BASE64_JUNK_RE.sub(b"", core)
    stray = len(clean) != len(core)
    dangling = len(clean) % 4 == 1
    unpadded = not dangling and len(clean) % 4 != 0 and not data.rstrip().endswith(b"=")
    if dangling:
        clean = clean[:-1]
    try:
        decoded = base64.b64decode(clean + b"=" * (-len(clean) % 4))
    except binascii.Error:  # cannot happen on a cleaned, padded input; kept for safety
        return b"", "base64: nothing could be decoded"
    problems = []
    if stray:
        problems.append("stray characters skipped")
    if dangling:
        problems.append("an incomplete last character dropped")
    if unpadded:
        problems.append("missing padding added")
    return decoded, ("base64: " + ", ".join(problems)) if problems else None
