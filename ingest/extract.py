"""Extraction templates: the text of a notification email with ``{{ field }}``
where the values stand (Hanna CRM's "template variables").

Rules, each tested in ``tests/test_extract.py``:

- each template line is matched on its own, anywhere in the body, in any order;
- literal text matches case-insensitively, a run of whitespace matches any run;
- a value runs to the end of its line, or to the literal text that follows it
  on the same line, and is trimmed;
- ``| optional`` fields may be missing; a template whose required fields are
  not all found does not match;
- ``| multiline`` values run on over the following lines until the next line
  that matches another template line (a line of literal text only, such as
  ``-- end of form --``, ends one where the form ends), a signature
  separator (``-- `` on its own line, RFC 3676), or the end of the body.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
from dataclasses import dataclass, field

from leadtap.core.config.load import TemplateConfig
from leadtap.core.errors import TemplateError
from leadtap.core.rules.model import IncomingMessage, LeadDraft, draft_from_fields, draft_from_message

FILTERS = ("optional", "multiline")
PLACEHOLDER_RE = re.compile(r"\{\{(.*?)\}\}")
IDENTIFIER_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SPACE = r"[^\S\r\n]"  # any whitespace within a line, the no-break space included


@dataclass(frozen=True)
class Placeholder:
    name: str
    optional: bool = False
    multiline: bool = False


@dataclass(frozen=True)
class Literal:
    """The text between two placeholders: its words, matched case-insensitively
    with any run of whitespace between them; None for whitespace only. Space
    around a literal needs no pattern: the values beside it are trimmed."""

    core: re.Pattern | None
    at_end: re.Pattern | None  # ``core`` anchored at the end of the searched text


@dataclass(frozen=True)
class TemplateLine:
    """One template line: literals and placeholders in turn
    (``literals[i]`` stands before ``placeholders[i]``; one more literal ends the line).

    ``match`` reads a body line in time linear in its length, whatever it holds:
    each literal is found by one forward search, the last one at the line's
    end, and each value is what lies between (a regular expression of lazy
    groups and whitespace runs would backtrack cubically on a run of spaces)."""

    text: str
    literals: tuple[Literal, ...]
    placeholders: tuple[Placeholder, ...]

    def match(self, text: str) -> list[str] | None:
        """The values (trimmed) when the body line ``text`` matches, else None."""
        start = len(text) - len(text.lstrip())
        first = self.literals[0]
        if first.core is not None:
            found = first.core.match(text, start)
            if found is None:
                return None
            start = found.end()
        end = len(text.rstrip())
        if not self.placeholders:
            return [] if start >= end else None
        tail = self.tail_start(text, start, end)
        if tail is None:
            return None
        values = []
        for literal in self.literals[1:-1]:
            if literal.core is None:  # two placeholders with only whitespace between: the first is empty
                values.append("")
                continue
            found = literal.core.search(text, start, tail)
            if found is None:
                return None
            values.append(text[start : found.start()].strip())
            start = found.end()
        values.append(text[start:tail].strip())
        return values

    def tail_start(self, text: str, start: int, end: int) -> int | None:
        """Where the line's last literal begins: it must end the line."""
        last = self.literals[-1]
        if last.at_end is None:
            return end
        found = last.at_end.search(text, start, end)
        return found.start() if found else None


@dataclass(frozen=True)
class Extraction:
    """What one template found in one body."""

    template: str
    fields: dict[str, str]
    missing: tuple[str, ...]

    @property
    def matched(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class ExtractionTemplate:
    name: str
    lines: tuple[TemplateLine, ...]
    required: tuple[str, ...] = field(default=())

    def extract(self, body: str) -> Extraction:
        body_lines = body.splitlines()
        found: dict[str, str] = {}
        for index, line in enumerate(self.lines):
            self._extract_line(index, line, body_lines, found)
        missing = tuple(name for name in self.required if not found.get(name))
        return Extraction(self.name, {k: v for k, v in found.items() if v}, missing)

    def _extract_line(self, index: int, line: TemplateLine, body_lines: list[str], found: dict[str, str]) -> None:
        if not line.placeholders or all(p.name in found for p in line.placeholders):
            return
        for number, text in enumerate(body_lines):
            values = line.match(text)
            if values is None:
                continue
            for value, placeholder in zip(values, line.placeholders):
                if placeholder.multiline:
                    value = self._continue_value(value, body_lines, number + 1, index)
                found.setdefault(placeholder.name, value)
            return

    def _continue_value(self, first: str, body_lines: list[str], start: int, index: int) -> str:
        """A multiline value runs on until a line that matches another template
        line, or a signature separator."""
        others = [line for other, line in enumerate(self.lines) if other != index]
        collected = [first]
        for text in itertools.islice(body_lines, start, None):
            if is_signature_separator(text) or any(other.match(text) is not None for other in others):
                break
            collected.append(text.rstrip())
        return "\n".join(collected).strip()


def is_signature_separator(text: str) -> bool:
    """``-- `` alone on its line (RFC 3676); also ``--``, as clients that trim trailing spaces send it."""
    return text.rstrip() == "--"


def compile_template(name: str, body: str) -> ExtractionTemplate:
    """Compile a template body; raise ``TemplateError`` naming the line at fault."""
    lines: list[TemplateLine] = []
    required: list[str] = []
    for number, text in enumerate(body.splitlines(), start=1):
        if not text.strip():
            continue
        line = compile_line(text, number)
        lines.append(line)
        for p in line.placeholders:
            if not p.optional and p.name not in required:
                required.append(p.name)
    if not any(line.placeholders for line in lines):
        raise TemplateError(f"template {name!r} has no {{{{ field }}}} placeholder")
    return ExtractionTemplate(name, tuple(lines), tuple(required))


def compile_line(text: str, number: int) -> TemplateLine:
    literals: list[Literal] = []
    placeholders: list[Placeholder] = []
    position = 0
    for match in PLACEHOLDER_RE.finditer(text):
        literals.append(compile_literal(check_literal(text[position : match.start()], text, number)))
        placeholders.append(parse_placeholder(match.group(1), number))
        position = match.end()
    literals.append(compile_literal(check_literal(text[position:], text, number)))
    return TemplateLine(text, tuple(literals), tuple(placeholders))


def check_literal(literal: str, line: str, number: int) -> str:
    if "{{" in literal or "}}" in literal:
        raise TemplateError(f"line {number}: unbalanced '{{{{' or '}}}}' in {line.strip()!r}")
    return literal


def compile_literal(literal: str) -> Literal:
    """Whitespace runs match any whitespace run; the rest matches itself."""
    words = [re.escape(word) for word in literal.split()]
    if not words:
        return Literal(None, None)
    core = (SPACE + "+").join(words)
    return Literal(re.compile(core, re.IGNORECASE), re.compile(core + r"\Z", re.IGNORECASE))


def parse_placeholder(inner: str, number: int) -> Placeholder:
    name, *filters = [part.strip() for part in inner.split("|")]
    if not IDENTIFIER_RE.fullmatch(name):
        raise TemplateError(f"line {number}: {{{{ {inner.strip()} }}}}: {name!r} is not a field name")
    for f in filters:
        if f not in FILTERS:
            raise TemplateError(f"line {number}: {{{{ {inner.strip()} }}}}: unknown filter {f!r}; known: {list(FILTERS)}")
    return Placeholder(name, optional="optional" in filters, multiline="multiline" in filters)


@dataclass(frozen=True)
class BoundTemplate:
    """A template's sender/subject filters with its compiled body."""

    config: TemplateConfig
    compiled: ExtractionTemplate

    def try_on(self, message: IncomingMessage) -> Extraction | None:
        """None when the filters refuse the message, else what the body gave."""
        sender = message.sender.email if message.sender else ""
        if not self.config.accepts(sender, message.subject):
            return None
        return self.compiled.extract(message.text)


def extract_lead(message: IncomingMessage, templates: list[BoundTemplate]) -> LeadDraft:
    """The first template (in the mailbox's order) that matches wins; when none
    does, the lead is built from the message itself."""
    for template in templates:
        found = template.try_on(message)
        if found is not None and found.matched:
            return draft_from_fields(template.compiled.name, found.fields)
    sender = message.sender.email.lower() if message.sender else ""
    from_a_form = any(t.config.from_glob and fnmatch.fnmatchcase(sender, t.config.from_glob.lower()) for t in templates)
    return draft_from_message(message, from_a_form)
