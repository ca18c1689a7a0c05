"""``leadtap leads export``: every lead, streamed to CSV or JSON Lines —
constant memory however many, a stable column order, Excel-safe CSV."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from leadtap.cli.common import EXIT_OK, EXIT_USAGE
from leadtap.core.errors import LeadtapError

if TYPE_CHECKING:
    from leadtap.bootstrap import App

# What a spreadsheet may take as a formula's start (OWASP's CSV injection), full-width forms and DDE's pipe too;
# looked for after any leading blank, which an import may trim.
FORMULA_STARTS = ("=", "+", "-", "@", "|", "\uff1d", "\uff0b", "\uff0d", "\uff20")
BLANKS = " \t\r\n\u3000"
LINE_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"}  # JSON may hold them; a line reader splits
PROGRESS_EVERY = 50_000


def add_arguments(export: argparse.ArgumentParser) -> None:
    export.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    export.add_argument("--since", metavar="DATE", help="leads received on or after this day (2026-12-01)")
    export.add_argument("--status", help="only leads in this status")
    export.add_argument("--pipeline", help="only this pipeline's leads")
    export.add_argument("--fields", metavar="A,B,…", help="these columns, in this order (default: all)")
    export.add_argument("--output", metavar="FILE", help="write here (default: standard output)")
    export.add_argument("--bom", action="store_true", help="CSV: begin with a UTF-8 byte order mark (Excel)")
    export.set_defaults(handler=cmd_leads_export)


def safe_cell(value) -> str:
    """A CSV cell a spreadsheet shows as text: one that would start a formula gets a leading quote."""
    if value is None:
        return ""
    text = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
    starts_blank = text[:1] in ("\t", "\r")
    return "'" + text if starts_blank or text.lstrip(BLANKS).startswith(FORMULA_STARTS) else text


def json_line(row: dict) -> str:
    """One JSON Lines record: no character a line reader takes for the end of a line."""
    line = json.dumps(row, ensure_ascii=False)
    for raw, escaped in LINE_BREAKS.items():
        line = line.replace(raw, escaped)
    return line + "\n"


def cmd_leads_export(app: App, args: argparse.Namespace) -> int:
    from datetime import datetime, time

    from leadtap.cli.leads import chosen_pipeline, known_status
    from leadtap.core.use_cases.views import export_columns, export_rows

    columns = export_columns(tuple(spec.name for spec in app.config.leads.fields))
    if args.fields:
        wanted = [name.strip() for name in args.fields.split(",") if name.strip()]
        unknown = [name for name in wanted if name not in columns]
        if unknown or not wanted:
            print(f"leadtap: unknown column {', '.join(unknown) or '(none given)'}; expected some of "
                  f"{', '.join(columns)}", file=sys.stderr)
            return EXIT_USAGE
        columns = tuple(dict.fromkeys(wanted))
    since = None
    if args.since:
        try:
            since = datetime.combine(datetime.strptime(args.since, "%Y-%m-%d").date(), time(), app.config.reminders.zone)
        except ValueError:
            print(f"leadtap: --since {args.since!r}: a day as 2026-12-01 is expected", file=sys.stderr)
            return EXIT_USAGE
    pipeline = chosen_pipeline(app, args.pipeline)
    if pipeline is False:
        return EXIT_USAGE
    app.db.check_schema()
    with app.db.reading() as session:  # on SQLite: no write lock, however long the export takes
        status = known_status(app, session, args.status, app.config.statuses) if args.status else None
        if args.status and status is None:
            return EXIT_USAGE
        rows = export_rows(session, since, status, (pipeline.key,) if pipeline else None)
        if not args.output:
            write(rows, columns, args.format, sys.stdout, args.bom, progress=False)
            return EXIT_OK
        count = write_file(Path(args.output), rows, columns, args.format, args.bom)
    print(f"exported {count} lead{'s' if count != 1 else ''} to {args.output}", file=sys.stderr)
    return EXIT_OK


def write_file(target: Path, rows: Iterable[dict], columns: tuple[str, ...], fmt: str, bom: bool) -> int:
    """Into a file beside ``target``, renamed to it once whole: an export that
    fails leaves no part of itself, and an earlier file as it was."""
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    except OSError as exc:
        raise LeadtapError(f"cannot write {target}: {exc.strerror}") from None
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            count = write(rows, columns, fmt, out, bom, progress=True)
        os.replace(temporary, target)
        return count
    except OSError as exc:
        raise LeadtapError(f"cannot write {target}: {exc.strerror}") from None
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write(rows: Iterable[dict], columns: tuple[str, ...], fmt: str, out, bom: bool, progress: bool) -> int:
    count = 0
    if fmt == "csv":
        if bom:
            out.write("\ufeff")
        writer = csv.writer(out)
        writer.writerow(columns)
    for row in rows:
        if fmt == "csv":
            writer.writerow([safe_cell(row.get(column)) for column in columns])
        else:
            out.write(json_line({column: row.get(column) for column in columns}))
        count += 1
        if progress and count % PROGRESS_EVERY == 0:
            print(f"exported {count} leads …", file=sys.stderr, flush=True)
    return count
