"""HTML → text: paragraphs and table rows on lines of their own, so that
extraction templates read an HTML notification like a plain one."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from leadtap.ingest.deadline import UNLIMITED, Deadline

CHUNK = 1024 * 1024
COMMENT_CLOSE_RE = re.compile(r"--\s*>")  # as html.parser closes a comment
MARKED_SECTION_RE = re.compile(r"<!\[\s*([a-zA-Z][-_.a-zA-Z0-9]*)?")
# Marked sections html.parser knows, by the close it looks for (_markupbase).
DOUBLE_CLOSED = {"temp", "cdata", "ignore", "include", "rcdata"}  # ]]>
SINGLE_CLOSED = {"if", "else", "endif"}  # ]>
DOUBLE_CLOSE_RE = re.compile(r"\]\s*\]\s*>")
SINGLE_CLOSE_RE = re.compile(r"\]\s*>")

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


def html_to_text(html: str, deadline: Deadline = UNLIMITED) -> str:
    """Fed in chunks, so a long document is read within the message's deadline."""
    html = defuse(html)
    extractor = TextExtractor()
    start = 0
    while start < len(html):
        deadline.check("reading the HTML")
        end = chunk_end(html, start)
        extractor.feed(html[start:end])
        start = end
    extractor.close()
    return extractor.text()


def chunk_end(html: str, start: int) -> int:
    """A chunk ends before a ``<``, so no character reference is split."""
    end = html.find("<", start + CHUNK)
    return len(html) if end < 0 else end


def defuse(html: str) -> str:
    """Markup that can never be completed, made text, so that the standard
    library's parser reads any document in linear time: it scans to the end
    of the document for each ``<`` that no ``>`` follows, each ``<!--`` that
    no ``-->`` follows and each marked section (``<![CDATA[``, ``<![if``)
    that is never closed — and fails on a marked section it does not know.
    A document whose markup is complete is not changed."""
    last_close = html.rfind(">")
    if last_close < len(html) - 1 and "<" in html[last_close + 1 :]:
        html = html[: last_close + 1] + html[last_close + 1 :].replace("<", "&lt;")
    comment_end = last_end(COMMENT_CLOSE_RE, html)
    if html.find("<!--", comment_end) >= 0:
        html = html[:comment_end] + html[comment_end:].replace("<!--", "&lt;!--")
    if "<![" not in html:
        return html
    double, single = last_end(DOUBLE_CLOSE_RE, html), last_end(SINGLE_CLOSE_RE, html)

    def marked(found: re.Match) -> str:
        name = (found.group(1) or "").lower()
        closed_by = double if name in DOUBLE_CLOSED else single if name in SINGLE_CLOSED else -1
        return found.group(0) if found.start() < closed_by else "&lt;" + found.group(0)[1:]

    return MARKED_SECTION_RE.sub(marked, html)


def last_end(pattern: re.Pattern, html: str) -> int:
    """Where the last match of ``pattern`` ends; 0 when there is none."""
    end = 0
    for found in pattern.finditer(html):
        end = found.end()
    return end
