"""HTML → text: paragraphs and table rows on lines of their own, so that
extraction templates read an HTML notification like a plain one."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from ingest.deadline import UNLIMITED, Deadline

CHUNK = 1024 * 1024
MARKED_SECTION_RE = re.compile(r"<!\[(?![A-Za-z])")

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
    for start in range(0, len(html), CHUNK):
        deadline.check("reading the HTML")
        extractor.feed(html[start : start + CHUNK])
    extractor.close()
    return extractor.text()


def defuse(html: str) -> str:
    """Markup that can never be completed, made text, so that the standard
    library's parser reads any document in linear time: it scans to the end
    of the document for each ``<`` that no ``>`` follows (and for each
    ``<!--`` that no ``-->`` follows), and fails on ``<![`` without a name.
    A document whose markup is complete is not changed."""
    last_close = html.rfind(">")
    if last_close < len(html) - 1 and "<" in html[last_close + 1 :]:
        html = html[: last_close + 1] + html[last_close + 1 :].replace("<", "&lt;")
    last_comment_end = html.rfind("-->")
    if html.find("<!--", max(last_comment_end, 0)) >= 0:
        head, tail = html[: last_comment_end + 1], html[last_comment_end + 1 :]
        html = head + tail.replace("<!--", "&lt;!--")
    return MARKED_SECTION_RE.sub("&lt;![", html)
