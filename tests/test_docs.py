"""The docs hold: every key the configuration reference (and the other pages'
TOML) shows is in the shipped example config, in the same table, set or
commented; the example config loads; every link between the docs leads to a
page and a heading that exist."""

from __future__ import annotations

import re

from leadtap.core.config.load import load_config
from tests.helpers import ROOT

DOCS = ROOT / "docs"
EXAMPLE = ROOT / "leadtap.example.toml"
TABLE_RE = re.compile(r"^\s*#?\s*\[\[?([a-z0-9_.]+)\]\]?")
KEY_RE = re.compile(r"^\s*#?\s*([a-z_]+)\s*=")


def keys_by_table(text: str) -> set[tuple[str, str]]:
    """(table, key) of every line ``key = …`` or ``# key = …`` under ``[table]`` or ``[[table]]``."""
    found, table = set(), ""
    for line in text.splitlines():
        header = TABLE_RE.match(line)
        if header and "=" not in line.split("]")[0]:
            table = header.group(1)
            continue
        key = KEY_RE.match(line)
        if key and table:
            found.add((table, key.group(1)))
    return found


def toml_blocks(text: str) -> list[str]:
    return re.findall(r"```toml\n(.*?)```", text, flags=re.S)


def test_every_key_the_docs_show_is_in_the_example_config():
    example = keys_by_table(EXAMPLE.read_text())
    shown = {pair for page in sorted(DOCS.glob("*.md")) for block in toml_blocks(page.read_text())
             for pair in keys_by_table(block)}
    assert shown, "no TOML in the docs?"
    missing = sorted(shown - example)
    assert not missing, f"keys the docs show that leadtap.example.toml lacks: {missing}"


def test_the_example_config_loads(tmp_path):
    config = load_config(EXAMPLE, {"LEADTAP_SALES_PASSWORD": "x", "CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.mailboxes and config.owners


def test_every_link_in_the_docs_leads_somewhere():
    pages = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: {target} leads nowhere"
            if anchor:
                headings = {slug(h) for h in re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)}
                assert anchor in headings, f"{page.name}: #{anchor} is no heading of {linked.name}"


def slug(heading: str) -> str:
    """A heading's anchor, as GitHub makes it."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
