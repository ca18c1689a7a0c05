"""leadtap: IMAP mailboxes become CRM leads.

One top-level name: ``leadtap.core``, ``leadtap.ingest``,
``leadtap.scheduler`` and ``leadtap.auth`` are installed inside this package.
In a checkout they sit beside it (``core/``, ``ingest/``, ``scheduler/``,
``auth/`` at the repository's top), and this package's path reaches them there.
"""

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_CHECKOUT = not (_HERE / "core").is_dir() and (_HERE.parent / "core" / "__init__.py").is_file()
if _CHECKOUT:
    __path__.append(str(_HERE.parent))  # the subpackages are the repository's folders


def shipped(installed: str, in_checkout: str) -> Path:
    """A file or folder shipped with leadtap: where pyproject.toml installs it
    inside the package, or where it sits in a checkout."""
    return _HERE.parent / in_checkout if _CHECKOUT else _HERE / installed


TEMPLATES = shipped("templates", "templates")
DEMO_MAIL = shipped("demo_mail", "demo/mail")
EXAMPLE_CONFIG = shipped("example/leadtap.example.toml", "leadtap.example.toml")
