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
             "authlib", "requests", "cryptography", "leadtap.ingest", "leadtap.scheduler", "leadtap.auth",
             "leadtap.cli", "leadtap.bootstrap")


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


LOADED = """
import sys
from leadtap.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(" ".join(sorted({name.split(".")[0] for name in sys.modules} | ({"sqlalchemy.orm"} & set(sys.modules)))))
"""


def loaded_by(*argv: str) -> set[str]:
    """The top-level packages a ``leadtap`` command has loaded when it ends (and ``sqlalchemy.orm``)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LOADED, *argv], capture_output=True, text=True, cwd=ROOT,
                          check=True)
    return set(done.stdout.splitlines()[-1].split())


def test_a_command_loads_only_what_it_uses(tmp_path):
    """What keeps start-up short (bench/startup.py): ``--help`` no SQLAlchemy,
    ``leads list`` no ORM, protocol library, scheduler or logging library."""
    config = tmp_path / "leadtap.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "leadtap.db"}"\n'
                      '[[owners]]\nemail = "ana@example.com"\nroles = ["sales"]\n')
    assert "sqlalchemy" in loaded_by("--config", str(config), "db", "upgrade")
    assert not {"sqlalchemy", "structlog", "tomllib"} & loaded_by("--help")
    listing = loaded_by("--config", str(config), "leads", "list")
    assert "sqlalchemy" in listing and "sqlalchemy.orm" not in listing  # the listing reads through Core
    assert not {"structlog", "imaplib", "imapclient", "smtplib", "apscheduler", "alembic", "jinja2",
                "mailparser", "authlib", "requests", "cryptography"} & listing  # (asyncio and ssl come with SQLAlchemy itself)


def test_each_command_is_built_alone_from_the_module_that_adds_it(capsys):
    """``leadtap leads list`` builds the parser of ``leads`` only: the table
    of commands must name every command the modules add, and each once."""
    import argparse

    from leadtap.cli import COMMANDS, MODULES, build_parser, command_in, main

    def commands_of(parser: argparse.ArgumentParser) -> set[str]:
        (subcommands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return set(subcommands.choices)

    assert commands_of(build_parser()) == set(COMMANDS) and set(COMMANDS.values()) == set(MODULES)
    for name, module in COMMANDS.items():
        assert name in commands_of(build_parser(["--config", "x.toml", name])), name
    assert commands_of(build_parser(["--log-level", "debug", "leads", "list"])) == {"leads"}
    assert command_in(["--config", "leads", "tasks"]) == "tasks" and command_in(["--help"]) is None
    assert command_in(["--config=x.toml", "leads"]) == "leads"
    for before in (["--conf", "leads"], ["-h"], ["--help"], ["--"]):  # argparse reads these: every parser is built
        assert command_in([*before, "leads", "list"]) is None
    with pytest.raises(SystemExit) as exited:
        main(["--conf", "leads", "tasks", "--help"])  # --conf is --config abbreviated: its value is "leads"
    assert exited.value.code == 0 and "usage: leadtap tasks" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["nope"])
    assert "invalid choice: 'nope' (choose from 'db', 'poll'," in capsys.readouterr().err
