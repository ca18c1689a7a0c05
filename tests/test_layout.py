"""The layout holds: core/ imports no protocol library; its four folders
import only inward (rules ← config ← store ← use_cases); the rules import no
SQLAlchemy. Read from the source's imports, so a test fails the day a file
breaks it."""

from __future__ import annotations

import ast

import pytest

from tests.helpers import ROOT

CORE = ROOT / "core"
# What each folder of core/ may import from leadtap, besides itself and core.errors.
INWARD = {
    "rules": (),
    "config": ("leadtap.core.rules",),
    "store": ("leadtap.core.rules", "leadtap.core.config"),
    "use_cases": ("leadtap.core.rules", "leadtap.core.config", "leadtap.core.store"),
}
PROTOCOLS = ("imapclient", "imaplib", "smtplib", "jinja2", "apscheduler", "mailparser", "socket", "ssl",
             "leadtap.ingest", "leadtap.scheduler", "leadtap.cli", "leadtap.bootstrap")


def imports_of(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if node.module == "leadtap.core"}
    return found


def modules(folder: str):
    return sorted(p for p in (CORE / folder).rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("folder", sorted(INWARD))
def test_each_folder_of_core_imports_only_inward(folder):
    allowed = (f"leadtap.core.{folder}", "leadtap.core.errors") + INWARD[folder]
    for path in modules(folder):
        outward = {name for name in imports_of(path) if name.startswith("leadtap.")
                   and not name.startswith(allowed)}
        assert not outward, f"{path.relative_to(ROOT)} imports {sorted(outward)}"


def test_core_imports_no_protocol_library():
    for path in sorted(CORE.rglob("*.py")):
        spoken = {name for name in imports_of(path) if name.split(".")[0] in PROTOCOLS or name.startswith(PROTOCOLS)}
        assert not spoken, f"{path.relative_to(ROOT)} imports {sorted(spoken)}"


def test_the_rules_import_no_sqlalchemy_and_read_no_clock():
    for path in modules("rules"):
        text = path.read_text()
        assert not {n for n in imports_of(path) if n.split(".")[0] in ("sqlalchemy", "alembic")}, path.name
        assert "datetime.now(" not in text and "utcnow()" not in text and "time.time(" not in text, path.name
