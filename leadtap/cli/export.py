"""``leadtap leads export``: every lead, streamed to CSV or JSON Lines —
constant memory however many, a stable column order, Excel-safe CSV."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import TYPE_CHECKING, Iterable

from leadtap.cli.common import EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from leadtap.bootstrap import App

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet takes as a formula (OWASP's CSV injection)
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
    return "'" + text if text.startswith(FORMULA_STARTS) else text


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
    out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        with app.db.transaction() as session:
            status = known_status(app, session, args.status, app.config.statuses) if args.status else None
            if args.status and status is None:
                return EXIT_USAGE
            rows = export_rows(session, since, status, (pipeline.key,) if pipeline else None)
            count = write(rows, columns, args.format, out, args.bom, progress=bool(args.output))
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"exported {count} lead{'s' if count != 1 else ''} to {args.output}", file=sys.stderr)
    return EXIT_OK


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
            out.write(json.dumps({column: row.get(column) for column in columns}, ensure_ascii=False) + "\n")
        count += 1
        if progress and count % PROGRESS_EVERY == 0:
            print(f"exported {count} leads …", file=sys.stderr, flush=True)
    return count
