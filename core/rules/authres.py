"""An ``Authentication-Results`` field value, read as RFC 8601 §2.2 writes it.

    authres-payload = [CFWS] authserv-id [CFWS authres-version]
                      ( no-result / 1*resinfo ) [CFWS]
    resinfo         = [CFWS] ";" methodspec [CFWS reasonspec] [CFWS 1*propspec]
    methodspec      = [CFWS] method [CFWS] "=" [CFWS] result
    propspec        = ptype [CFWS] "." [CFWS] property [CFWS] "=" pvalue

Comments (nested) and quoted strings are read with RFC 5322's quoted-pairs:
``\\)`` inside a comment does not end it and ``\\"`` inside a quoted string
does not end it — a receiving server that records a sender's HELO or
envelope address in a comment, escaped as the grammar says, must not let
that sender write results of their own. Whatever does not read as the
grammar says is left out: a result that cannot be read never passes.

Plain code: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

MAX_CHARS = 8000  # one field; a server writes a few hundred
SPECIALS = ";=/"
SPACE = " \t\r\n"
WORD, QUOTED, SPECIAL = "word", "quoted", "special"


@dataclass(frozen=True)
class Result:
    """One ``method=result`` and its properties (``header.from``, ``header.d``, ``header.i``, …)."""

    method: str  # lower case, without a version
    result: str  # lower case
    properties: dict[str, str] = field(default_factory=dict)  # ptype.property (lower case) → value


@dataclass(frozen=True)
class AuthResults:
    authserv_id: str  # lower case
    results: tuple[Result, ...]
    complete: bool = True  # False: longer than MAX_CHARS, read only in part (its last results unknown)


@dataclass(frozen=True)
class Token:
    kind: str  # word | quoted | special
    text: str  # a quoted string's text without its quotes and escapes
    glued: bool  # no space or comment before it: "ana"@example.com is one value


def parse(value: str) -> AuthResults | None:
    """The field's authserv-id and results; None when not even its
    authserv-id can be read. A resinfo that does not read is left out."""
    segments = split_at_semicolons(list(tokenize(value[:MAX_CHARS])))
    head = segments[0]
    if not head or head[0].kind == SPECIAL:
        return None
    complete = len(value) <= MAX_CHARS
    readable = segments[1:] if complete else segments[1:-1]  # a result cut in the middle is not read
    results = tuple(r for r in (read_resinfo(s) for s in readable) if r is not None)
    return AuthResults(head[0].text.lower(), results, complete)


def tokenize(text: str) -> Iterator[Token]:
    """Words, quoted strings and the specials ``; = /``; spaces and comments dropped."""
    index, glued = 0, False
    while index < len(text):
        char = text[index]
        if char in SPACE:
            index, glued = index + 1, False
        elif char == "(":
            index, glued = skip_comment(text, index), False
        elif char == '"':
            content, index = read_quoted(text, index)
            yield Token(QUOTED, content, glued)
            glued = True
        elif char in SPECIALS:
            yield Token(SPECIAL, char, glued)
            index, glued = index + 1, False
        else:
            start = index
            while index < len(text) and text[index] not in SPACE + SPECIALS + '()"':
                index += 1
            if index == start:  # a stray ")": not part of any value
                index += 1
                glued = False
                continue
            yield Token(WORD, text[start:index], glued)
            glued = True


def skip_comment(text: str, index: int) -> int:
    """The index after the comment opening at ``index`` (nested, with
    quoted-pairs); an unclosed comment runs to the end."""
    depth = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        depth += char == "("
        depth -= char == ")"
        index += 1
        if depth == 0:
            return index
    return index


def read_quoted(text: str, index: int) -> tuple[str, int]:
    """The quoted string opening at ``index``, unescaped, and the index after
    it; an unclosed one runs to the end."""
    out, index = [], index + 1
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(text[index + 1])
            index += 2
        elif char == '"':
            return "".join(out), index + 1
        else:
            out.append(char)
            index += 1
    return "".join(out), index


def split_at_semicolons(tokens: list[Token]) -> list[list[Token]]:
    segments: list[list[Token]] = [[]]
    for token in tokens:
        if token.kind == SPECIAL and token.text == ";":
            segments.append([])
        else:
            segments[-1].append(token)
    return segments


def read_resinfo(tokens: list[Token]) -> Result | None:
    """``method[/version] = result [reason=…] [ptype.property=value]…``, or
    None when it does not read so (or names one property twice, differently).
    A ``key=value`` that is not ``ptype.property`` (Exchange Online's
    ``action=none``) is passed over: the result stands without it."""
    at = 0

    def take(kind: str, text: str | None = None) -> Token | None:
        nonlocal at
        if at < len(tokens) and tokens[at].kind == kind and (text is None or tokens[at].text == text):
            at += 1
            return tokens[at - 1]
        return None

    method = take(WORD)
    if method is None:
        return None
    if take(SPECIAL, "/") and take(WORD) is None:
        return None
    result = take(SPECIAL, "=") and take(WORD)
    if not result:
        return None
    properties: dict[str, str] = {}
    while at < len(tokens):
        name = take(WORD)
        if name is None or take(SPECIAL, "=") is None or at >= len(tokens) or tokens[at].kind == SPECIAL:
            return None
        value, at = read_value(tokens, at)
        key = name.text.lower()
        if key != "reason" and "." not in key:
            continue
        if properties.setdefault(key, value) != value:
            return None
    return Result(method.text.lower(), result.text.lower(), properties)


def read_value(tokens: list[Token], at: int) -> tuple[str, int]:
    """A value: a word or quoted string, with what is glued to it
    (``"ana smith"@example.com``)."""
    parts = [tokens[at].text]
    at += 1
    while at < len(tokens) and tokens[at].glued and tokens[at].kind != SPECIAL:
        parts.append(tokens[at].text)
        at += 1
    return "".join(parts), at
