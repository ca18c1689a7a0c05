"""Extraction is linear whatever a web form's visitor types: the matcher gives
the values the template rules define (checked against a plain regular
expression of the same rules, on inputs small enough for it), and a hostile
body costs time in proportion to its size. No servers needed."""

from __future__ import annotations

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from leadtap.ingest.extract import PLACEHOLDER_RE, compile_template

SPACE = r"[^\S\r\n]"


def reference_pattern(line: str) -> re.Pattern:
    """The template rules as one backtracking regular expression: fine for a
    short line, cubic on a long run of spaces."""

    def literal(text: str) -> str:
        words = [re.escape(w) for w in text.split()]
        if not words:
            return SPACE + "*"
        lead = SPACE + "*" if text[:1].isspace() else ""
        tail = SPACE + "*" if text[-1:].isspace() else ""
        return lead + (SPACE + "+").join(words) + tail

    parts, position = [SPACE + "*"], 0
    for match in PLACEHOLDER_RE.finditer(line):
        parts += [literal(line[position : match.start()]), "(.*?)"]
        position = match.end()
    parts += [literal(line[position:]), SPACE + "*$"]
    return re.compile("".join(parts), re.IGNORECASE)


def reference_values(line: str, text: str) -> list[str] | None:
    found = reference_pattern(line).match(text)
    return None if found is None else [g.strip() for g in found.groups()]


def compiled_line(line: str):
    return compile_template("t", line + (" {{ extra }}" if "{{" not in line else "")).lines[0]


# Small alphabets make collisions between literals and values likely.
WORDS = st.sampled_from(["a", "A", "ab", "b:", ":", "x", "Name:", "kg"])
SPACES = st.sampled_from([" ", "  ", "\t", "\xa0", ""])
TEMPLATE_LINES = st.lists(
    st.one_of(WORDS, SPACES, st.just("{{ v }}")), min_size=1, max_size=7
).map("".join).filter(lambda s: "{{ v }}" in s and s.strip() and "}}{{" not in s)
BODY_LINES = st.lists(st.one_of(WORDS, SPACES), max_size=10).map("".join)


def numbered(line: str) -> str:
    count = iter(range(100))
    return re.sub(r"\{\{ v \}\}", lambda _: f"{{{{ v{next(count)} }}}}", line)


@settings(max_examples=3000, deadline=None)
@given(TEMPLATE_LINES, BODY_LINES)
def test_the_linear_matcher_agrees_with_the_template_rules(template_line, body_line):
    line = numbered(template_line)

    assert compiled_line(line).match(body_line) == reference_values(line, body_line)


@settings(max_examples=500, deadline=None)
@given(TEMPLATE_LINES, st.lists(WORDS, min_size=1, max_size=4))
def test_a_line_built_from_the_template_matches_it(template_line, values):
    line = numbered(template_line)
    fill = iter(values * 4)
    body = re.sub(r"\{\{ v\d+ \}\}", lambda _: next(fill), line)

    assert compiled_line(line).match(body) == reference_values(line, body)
    assert reference_values(line, body) is not None


def test_a_form_field_full_of_spaces_is_read_at_once():
    template = compile_template("t", "Name: {{ name }}\nPhone: {{ phone }} ext {{ ext | optional }}")
    body = "Name: Jo" + " " * 20_000 + "x\nPhone: 1" + " " * 20_000 + "2 ext 3\n"

    found = template.extract(body)

    assert found.fields["name"] == "Jo" + " " * 20_000 + "x"
    assert found.fields["phone"] == "1" + " " * 20_000 + "2"
    assert found.fields["ext"] == "3"


def adversarial_body(size: int) -> str:
    """Lines that start like template lines and then run on in spaces and
    near-misses: the worst case for a backtracking matcher."""
    unit = (
        "Name: Jo" + " " * 997 + "x\n"
        + "Phone: 1" + " " * 997 + "ex\n"
        + "End" + " " * 997 + "her" + " " * 300 + "\n"
        + "Message: " + "ab " * 300 + "\n"
        + " " * 1000 + "\n"
    )
    return (unit * (size // len(unit) + 1))[:size]


def extraction_seconds(template, body: str) -> float:
    started = time.perf_counter()
    template.extract(body)
    return time.perf_counter() - started


def test_extraction_of_a_five_megabyte_hostile_body_stays_linear():
    """Five megabytes of lines like the measured attack take seconds at most;
    the backtracking matcher took 37 s for one 2,000-space line, so a
    regression costs hours here, not a few per cent. The ratio to a body a
    fifth of the size shows the growth is linear, with room for a busy machine."""
    template = compile_template(
        "t",
        "Name: {{ name }}\nPhone: {{ phone }} ext {{ ext }}\nMessage: {{ message | multiline }}\nEnd {{ end }} here",
    )
    small, large = adversarial_body(1_000_000), adversarial_body(5_000_000)

    small_seconds = min(extraction_seconds(template, small) for _ in range(2))
    large_seconds = extraction_seconds(template, large)

    assert large_seconds < 30
    assert large_seconds < 20 * max(small_seconds, 0.05)
