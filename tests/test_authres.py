"""Authentication-Results read as RFC 8601 writes it (``core.rules.authres``): the
grammar's cases, comments and quoted strings with RFC 5322 quoted-pairs, and
fuzzed against ``authres`` (the reference parser, a test-only dependency)."""

from __future__ import annotations

import authres as reference
from hypothesis import given, settings
from hypothesis import strategies as st

from leadtap.core.rules.authres import AuthResults, Result, parse


def test_it_reads_the_authserv_id_the_results_and_their_properties():
    parsed = parse('mx.example.com 1; spf=pass smtp.mailfrom=ana@example.com; '
                   'dkim/1=pass reason="signature ok" header.d=example.com header.i=@example.com; '
                   'dmarc=pass (p=none) header.from="example.com"')
    assert parsed == AuthResults("mx.example.com", (
        Result("spf", "pass", {"smtp.mailfrom": "ana@example.com"}),
        Result("dkim", "pass", {"reason": "signature ok", "header.d": "example.com", "header.i": "@example.com"}),
        Result("dmarc", "pass", {"header.from": "example.com"}),
    ))


def test_no_result_and_unreadable_results_are_left_out():
    assert parse("mx.example.com; none") == AuthResults("mx.example.com", ())
    assert parse("mx.example.com; dkim pass; dmarc=pass header.from; spf=pass x=y=z; iprev=pass") == AuthResults(
        "mx.example.com", (Result("iprev", "pass", {}),))
    assert parse("") is None and parse("(only a comment)") is None and parse("; dmarc=pass") is None


def test_a_key_that_is_not_ptype_property_is_passed_over_and_a_long_field_read_in_part():
    assert parse("mx; dmarc=pass action=none header.from=example.com").results == (
        Result("dmarc", "pass", {"header.from": "example.com"}),)
    long = parse("mx; dkim=pass header.d=example.com; " + "spf=pass smtp.helo=x; " * 500)
    assert not long.complete and long.results[0] == Result("dkim", "pass", {"header.d": "example.com"})


def test_a_property_named_twice_differently_is_not_read():
    assert parse("mx; dmarc=pass header.from=evil.test header.from=example.com").results == ()
    assert parse("mx; dmarc=pass header.from=example.com header.from=example.com").results == (
        Result("dmarc", "pass", {"header.from": "example.com"}),)


def test_quoted_pairs_keep_comments_and_quoted_strings_whole():
    parsed = parse(r'mx; spf=pass (helo=x\); dmarc=pass header.from=example.com; \() smtp.helo=x; '
                   r'auth=pass smtp.auth="a\"; dmarc=pass header.from=example.com; x=\"b"@example.com')
    assert parsed.results == (Result("spf", "pass", {"smtp.helo": "x"}),
                              Result("auth", "pass",
                                     {"smtp.auth": 'a"; dmarc=pass header.from=example.com; x="b@example.com'}))


def test_an_unclosed_comment_or_string_swallows_the_rest():
    assert parse("mx; spf=pass (dmarc=pass header.from=example.com").results == (Result("spf", "pass", {}),)
    assert parse('mx; auth=pass smtp.auth="x; dmarc=pass header.from=example.com').results == (
        Result("auth", "pass", {"smtp.auth": "x; dmarc=pass header.from=example.com"}),)


# --- fuzzed against the reference parser ------------------------------------------------

KEYWORD = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)
DOMAIN = st.from_regex(r"[a-z][a-z0-9]{0,7}(\.[a-z][a-z0-9]{0,7}){1,2}", fullmatch=True)
PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
CTEXT = st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="()\\")
QTEXT = st.characters(min_codepoint=0x20, max_codepoint=0x7E, blacklist_characters='"\\')


def comments():
    """A comment as RFC 5322 writes it: text, quoted-pairs (``\\)``, ``\\(``,
    ``\\;``...) and nested comments — holding whatever a sender can put in a
    HELO or an envelope address."""
    leaf = st.one_of(CTEXT, PRINTABLE.map(lambda c: "\\" + c), st.just(" "), st.sampled_from(";=\"."))

    def wrap(parts: list[str]) -> str:
        return "(" + "".join(parts) + ")"

    def nest(comment: st.SearchStrategy) -> st.SearchStrategy:
        return st.lists(st.one_of(leaf, comment), max_size=6).map(wrap)

    return st.recursive(st.lists(leaf, max_size=12).map(wrap), nest, max_leaves=8)


CFWS = st.one_of(st.just(" "), comments().map(lambda c: f" {c} "))
QUOTED = st.lists(st.one_of(QTEXT, PRINTABLE.map(lambda c: "\\" + c)), min_size=1, max_size=12).map(
    lambda parts: '"' + "".join(parts) + '"')
VALUE = st.one_of(DOMAIN, KEYWORD, st.tuples(KEYWORD, DOMAIN).map("@".join), DOMAIN.map("@".__add__))


@st.composite
def resinfos(draw):
    text = draw(KEYWORD) + "=" + draw(KEYWORD)
    if draw(st.booleans()):
        text += draw(CFWS) + "reason=" + draw(QUOTED)
    names = draw(st.lists(st.tuples(st.sampled_from(["smtp", "header", "body", "policy"]), KEYWORD), max_size=3,
                          unique=True))  # the registered ptypes: the reference leaves others out
    for ptype, name in names:
        text += draw(CFWS) + f"{ptype}.{name}=" + draw(VALUE)
    return text


@st.composite
def headers(draw):
    text = draw(DOMAIN) + (" 1" if draw(st.booleans()) else "")
    for info in draw(st.lists(resinfos(), min_size=1, max_size=4)):
        text += draw(CFWS) + ";" + draw(CFWS) + info
    return text + draw(st.sampled_from(["", " ", " (trailing)"]))


def unescaped(value: str) -> str:
    out, escape = [], False
    for char in value:
        if escape or char != "\\":
            out.append(char)
        escape = not escape and char == "\\"
    return "".join(out)


def as_reference_reads_it(value: str) -> AuthResults:
    header = reference.AuthenticationResultsHeader.parse_value(value)
    results = []
    for r in header.results:
        properties = {"reason": unescaped(r.reason)} if r.reason is not None else {}
        for p in r.properties:
            properties.setdefault(f"{p.type}.{p.name}".lower(), p.value)
        results.append(Result(r.method.lower(), r.result.lower(), properties))
    return AuthResults(header.authserv_id.lower(), tuple(results))


@settings(max_examples=400, deadline=None)
@given(headers())
def test_it_reads_what_the_reference_reads(header):
    assert parse(header) == as_reference_reads_it(header)


@settings(max_examples=300, deadline=None)
@given(headers(), comments())
def test_no_comment_changes_a_result(header, comment):
    """Whatever a comment holds, escaped as the grammar says, the results
    are those of the field without it."""
    with_comment = header.replace(";", f" {comment} ;", 1)
    assert parse(with_comment) == parse(header)
