"""``leadtap extract``: what a template finds in a saved message."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from leadtap.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from leadtap.core.errors import MessageError
from typing import TYPE_CHECKING


if TYPE_CHECKING:  # the handlers import what they use: --help loads none of it
    from leadtap.bootstrap import App


def add_commands(subcommands: argparse._SubParsersAction) -> None:
    extract = subcommands.add_parser("extract", help="try an extraction template on a saved message")
    extract.add_argument("--template", required=True, help="the template's name")
    extract.add_argument("file", type=Path, help="a saved message (.eml)")
    extract.set_defaults(handler=cmd_extract)


def cmd_extract(app: App, args: argparse.Namespace) -> int:
    from leadtap.ingest.parse import parse_message
    template = app.templates.get(args.template)
    if template is None:
        print(f"leadtap: no extraction template named {args.template!r}; defined: {list(app.templates)}",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        message = parse_message(args.file.read_bytes())
    except OSError as exc:
        print(f"leadtap: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except MessageError as exc:
        print(f"leadtap: {args.file}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    found = template.try_on(message)
    result = {
        "template": args.template,
        "filters_pass": found is not None,
        "filter_refused": template.config.refusal(message.sender.email if message.sender else "", message.subject),
        "matched": bool(found and found.matched),
        "fields": found.fields if found else {},
        "missing": list(found.missing) if found else [],
        "warnings": list(message.warnings),
        "body": message.text,
    }
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return EXIT_OK if result["matched"] else EXIT_FAILED
