"""Secrets in the configuration: passwords, client secrets, keys. Each is
given as ``KEY_env`` (an environment variable), ``KEY_file`` (a file, e.g. a
systemd credential) or, with a warning, ``KEY`` itself; it is read when a
command first needs it, never shown."""

from __future__ import annotations

from pathlib import Path
from string import Template
from typing import Callable, Mapping

from leadtap.core.config.values import Section


class Secret:
    """A password that never shows itself in a repr, a log line or an error.

    Read when a command first needs it (``load``), not when the config is
    loaded: listing leads needs no IMAP password. A secret that cannot be read
    raises ``ConfigError`` naming the file and the key, then."""

    __slots__ = ("_value", "_load")

    def __init__(self, value: str | None = None, load: Callable[[], str] | None = None):
        self._value, self._load = value, load

    def reveal(self) -> str:
        if self._value is None:
            self._value = self._load()
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        """Equal values, or the same source — never read for a comparison."""
        if not isinstance(other, Secret):
            return False
        if self._value is not None and other._value is not None:
            return self._value == other._value
        return self._load is other._load and self._load is not None

    def __hash__(self) -> int:
        return id(self._load) if self._load is not None else hash(self._value)


def resolve_secret(s: Section, values: dict, key: str, environ: Mapping[str, str], warnings: list[str],
                   literal: bool = True) -> Secret | None:
    """``key``, ``key_env`` or ``key_file`` (one of them at most): None when
    none is given. A literal secret is taken with a warning, or refused when
    ``literal`` is False."""
    given = [k for k in (key, f"{key}_env", f"{key}_file") if k in values]
    if len(given) > 1:
        s.fail(given[1], f"exactly one of {key}_env, {key}_file or {key} is expected")
    if not given:
        return None
    if given[0] != key:
        return Secret(load=secret_reader(s, given[0], values[given[0]], environ))
    if not literal:
        s.fail(key, f"give it as {key}_file or {key}_env, not in the config itself")
    warnings.append(f"{s.path}: {s.where(key)}: a literal {named(key)} in the config file; "
                    f"prefer {key}_env or {key}_file")
    return Secret(values[key])


def secret_reader(s: Section, key: str, written: str, environ: Mapping[str, str]) -> Callable[[], str]:
    """What reads a secret when first needed: ``*_env`` names a variable, ``*_file`` a file."""
    if key.endswith("_env"):
        return lambda: read_env_secret(s, key, written, environ)
    base = s.path.resolve().parent  # now: the working directory may change before the secret is read
    return lambda: read_file_secret(s, key, written, environ, base)


def read_env_secret(s: Section, key: str, name: str, environ: Mapping[str, str]) -> str:
    if name not in environ:
        s.fail(key, f"environment variable {name} is not set")
    return environ[name]


def read_file_secret(s: Section, key: str, written: str, environ: Mapping[str, str], base: Path) -> str:
    """``${CREDENTIALS_DIRECTORY}/imap`` and the like; a relative path is the config file's directory's."""
    try:
        file = str(base / Template(written).substitute(environ))
    except (KeyError, ValueError) as exc:
        s.fail(key, f"cannot expand {written!r}: variable {exc} is not set")
    try:
        return Path(file).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        s.fail(key, f"cannot read the {named(key)} file {file!r}: {exc.strerror}")
    except UnicodeDecodeError:
        s.fail(key, f"the {named(key)} file {file!r} is not UTF-8 text")


def named(key: str) -> str:
    """What a secret's key names, in words: ``client_secret_file`` → "client secret"."""
    return key.removesuffix("_file").removesuffix("_env").replace("_", " ")


def at_least(s: Section, key: str, read: Callable[[], str], minimum: int, measure: Callable[[str], int],
             what: str, unit: str, hint: str) -> Secret:
    """A secret refused, when read, if it is shorter than ``minimum`` (as
    ``measure`` counts it): named with its key, and how to make a good one."""
    def load() -> str:
        value = read()
        size = measure(value)
        if size < minimum:
            s.fail(key, f"the {what} is {size} {unit}; at least {minimum} are expected ({hint})")
        return value

    return Secret(load=load)
