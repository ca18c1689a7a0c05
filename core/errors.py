"""leadtap's own exceptions. Adapters translate library errors into these."""

from __future__ import annotations

from pathlib import Path


class LeadtapError(Exception):
    """Base of every error leadtap reports to a user without a traceback."""


class ConfigError(LeadtapError):
    """The configuration file is wrong; says which file, which key, what is expected."""

    def __init__(self, path: Path | str, key: str, message: str):
        self.path, self.key, self.message = Path(path), key, message
        where = f"{self.path}: {key}" if key else f"{self.path}"
        super().__init__(f"{where}: {message}")


class SchemaError(LeadtapError):
    """The database schema is missing or older than this version of leadtap."""


class DatabaseUnavailable(LeadtapError):
    """The database cannot be reached."""


class ImapError(LeadtapError):
    """The IMAP server could not be reached or refused a command."""


class ImapLoginError(ImapError):
    """The IMAP server refused the credentials (or no OAuth2 token could be
    had); ``attention``: a person must act before a new try can succeed."""

    def __init__(self, message: str, attention: bool = True):
        self.attention = attention
        super().__init__(message)


class MessageError(LeadtapError):
    """A message cannot be processed (broken MIME, undecodable charset, ...)."""


class TemplateError(LeadtapError):
    """An extraction template is not valid."""


class MailSendError(LeadtapError):
    """An email could not be sent; ``permanent`` when trying again cannot help."""

    def __init__(self, message: str, permanent: bool, sweep_wide: bool = False, timed_out: bool = False):
        self.permanent = permanent
        self.sweep_wide = sweep_wide  # the server or the login failed, not this letter
        self.timed_out = timed_out  # the server stopped answering in the middle of this letter
        super().__init__(message)


class TokenKeyError(LeadtapError):
    """A stored token does not open with the key: not the one it was stored with, or not leadtap's format."""


class OAuth2Error(LeadtapError):
    """A sign-in could not get an access token.

    ``attention``: a person must act (a grant revoked or expired, a wrong
    secret, consent missing) — retrying cannot help; else the token endpoint
    is down or slow and a later try may."""

    def __init__(self, message: str, attention: bool, code: str | None = None):
        self.attention, self.code = attention, code
        super().__init__(message)
