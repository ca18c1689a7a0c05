"""How the command line prints rows: a table for people, JSON or CSV for programs."""

from __future__ import annotations

import csv
import json
from typing import Callable, Iterable


def write_rows(rows: Iterable[dict], fmt: str, out, columns: tuple[str, ...], noun: str) -> None:
    """``table`` shows ``columns`` and a count of ``noun``s; ``json`` and ``csv`` every key."""
    if fmt == "json":
        json.dump(list(rows), out, indent=2, ensure_ascii=False)
        out.write("\n")
    elif fmt == "csv":
        writer = None
        for item in rows:
            row = {k: json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v for k, v in item.items()}
            if writer is None:
                writer = csv.DictWriter(out, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
    else:
        cells = [[str(item[c] if item[c] is not None else "") for c in columns] for item in rows]
        print_table(list(columns), cells, out, noun)


def print_table(header: list[str], rows: list[list[str]], out, noun: str = "lead") -> None:
    rows = [[cell.replace("\n", " ")[:40] for cell in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    for line in [header] + rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() + "\n")
    out.write(f"({len(rows)} {noun}{'s' if len(rows) != 1 else ''})\n")


def print_mail_sent(app, load: Callable, noun: str, unsent: str, what: Callable[[dict], str]) -> int:
    """One line per email leadtap sent (or owes): when, the lead, what, state, to whom, the error."""
    app.db.check_schema()
    with app.db.transaction() as session:
        rows = load(session)
    for row in rows:
        lead = f"lead #{row['lead_id']}" if row["lead_id"] else "no lead"
        print(f"{row['sent_at'] or unsent:32}  {lead} {row['lead'] or ''!s:.30}  "
              f"{what(row)}  {row['state']}  → {row['recipient']}" + (f"  ({row['error']})" if row["error"] else ""))
    print(f"({len(rows)} {noun}{'s' if len(rows) != 1 else ''})")
    return 0  # EXIT_OK
