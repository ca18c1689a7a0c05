"""The IMAP adapter: one mailbox folder, opened, read in batches, closed.

Everything comes in through the constructor; every imapclient, socket and TLS
error leaves this module as ``ImapError`` (or ``ImapLoginError``) with a
message an operator can act on and never the password.
"""

from __future__ import annotations

import socket
import ssl
from contextlib import contextmanager
from datetime import datetime
from typing import Iterator, Protocol

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from leadtap.core.config.load import MailboxConfig
from leadtap.core.errors import ImapError, ImapLoginError, OAuth2Error

SEEN = b"\\Seen"
SENT = b"\\Sent"  # RFC 6154's special use of the folder a mail client files sent mail in
NO_SELECT = (b"\\Noselect", b"\\NonExistent")  # a name in the hierarchy, not a folder
LISTED = 30  # folders named in an error; a server may have hundreds
USE_TLS = 'set security = "tls" (port 993) or "starttls" (port 143)'


class Tokens(Protocol):
    """An OAuth2 mailbox's access tokens (leadtap.auth.tokens.BoundTokens)."""

    mechanism: str

    def token(self, refused: str | None = None) -> str: ...

    def refused(self, detail: str) -> None: ...

    def renew_at(self) -> datetime | None: ...

    def spent(self, token: str) -> None: ...


def where(box: MailboxConfig) -> str:
    return f"mailbox {box.name!r} ({box.host}:{box.port})"


@contextmanager
def translated_errors(box: MailboxConfig, doing: str) -> Iterator[None]:
    try:
        yield
    except ImapError:
        raise
    except LoginError as exc:
        raise ImapLoginError(login_refused(box, server_text(exc))) from None
    except ssl.SSLError as exc:
        raise ImapError(f"{where(box)}: TLS failed while {doing}: {exc.reason or exc}") from None
    except socket.timeout:
        raise ImapError(f"{where(box)}: timed out while {doing}") from None
    except (OSError, EOFError) as exc:
        raise ImapError(f"{where(box)}: connection failed while {doing}: {exc.strerror or exc}") from None
    except IMAPClientAbortError as exc:
        # imaplib's abort is the connection breaking under it (an EOF, a reset,
        # a line it cannot read), never a NO or BAD the server answered.
        raise ImapError(f"{where(box)}: connection lost while {doing}: {server_text(exc)}") from None
    except IMAPClientError as exc:
        raise ImapError(f"{where(box)}: server refused while {doing}: {server_text(exc)}") from None


def login_refused(box: MailboxConfig, text: str) -> str:
    """A refused login; one refused only for want of encryption (RFC 5530's
    PRIVACYREQUIRED) says what to configure."""
    refused = f"{where(box)}: login refused for {box.username!r}: {text}"
    return f"{refused}; {USE_TLS}" if "PRIVACYREQUIRED" in text.upper() else refused


# RFC 5530's codes for a sign-in the server cannot check now: not the token's fault.
TEMPORARY = ("[UNAVAILABLE]", "[SERVERBUG]", "[INUSE]", "[LIMIT]")


def token_expired(exc: Exception) -> bool:
    """Exchange's ``* BYE Session invalidated - AccessTokenExpired``: the session's token ran out."""
    return "accesstokenexpired" in str(exc).lower()


def refused_token(exc: ImapError) -> bool:
    """The server turned the token down: at AUTHENTICATE, or (Exchange) at the first command after it."""
    return ((isinstance(exc, ImapLoginError) or "authenticated but not connected" in str(exc).lower())
            and not temporary(exc))


def temporary(exc: ImapError) -> bool:
    return any(code in str(exc).upper() for code in TEMPORARY)


def server_text(exc: Exception) -> str:
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text


class ImapMailbox:
    """A selected folder of one configured mailbox.

    The folder is opened with SELECT, also when leadtap changes none of its
    flags (a sent folder, ``unread_only = false``): RFC 3501 lets EXAMINE
    change nothing in the mailbox's permanent state, so a server that gives
    out UIDs only as it writes them down (Courier, on a folder nothing has
    written to) must announce a new UIDVALIDITY at every read-only open
    (RFC 3501 2.3.1.1) — and every pass would read the whole folder again.
    Nothing is changed all the same: messages are fetched with BODY.PEEK[],
    and ``\\Seen`` is set only for ``unread_only``. ``readonly`` (EXAMINE) is
    for the IDLE watch, which only waits.
    """

    def __init__(self, box: MailboxConfig, timeout: float, readonly: bool = False, tokens: Tokens | None = None):
        """``tokens``: where an ``auth = "oauth2"`` mailbox gets its access token."""
        self.box = box
        self.timeout = timeout
        self.readonly = readonly
        self.tokens = tokens
        self.token: str | None = None  # the OAuth2 token this session signed in with
        self.client: IMAPClient | None = None
        self.uidvalidity = 0
        self.uidnext: int | None = None

    def __enter__(self) -> "ImapMailbox":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        if self.box.oauth2 is not None:
            status = self.open_with_token()
        else:
            password = self.box.password.reveal()  # read now, before any connection: a ConfigError if it cannot be
            self.connect()
            self.log_in(password)
            status = self.select()
        self.uidvalidity = int(status[b"UIDVALIDITY"])
        self.uidnext = int(status[b"UIDNEXT"]) if b"UIDNEXT" in status else None

    def connect(self) -> None:
        box = self.box
        with translated_errors(box, "connecting"):
            self.client = IMAPClient(
                box.host,
                port=box.port,
                ssl=box.security == "tls",
                ssl_context=self.tls_context() if box.security == "tls" else None,
                timeout=self.timeout,
            )
            # imaplib sends an AUTHENTICATE answer and its CRLF in two writes: with
            # Nagle's algorithm the second waits for the server's delayed ACK (40 ms).
            self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_in(self, password: str) -> None:
        """STARTTLS if configured, then LOGIN — unless the server announced
        LOGINDISABLED (Cyrus without TLS): its own refusal ("Login only
        available under a layer") would not say what to configure."""
        box = self.box
        with translated_errors(box, "logging in"):
            self.start_tls()
            if self.client.has_capability("LOGINDISABLED"):
                raise ImapLoginError(f"{where(box)}: the server allows no login without encryption "
                                     f"(it announces LOGINDISABLED): {USE_TLS}")
            self.client.login(box.username, password)

    def start_tls(self) -> None:
        if self.box.security == "starttls":
            self.client.starttls(self.tls_context())

    def open_with_token(self) -> dict:
        """Sign in with an OAuth2 access token (SASL XOAUTH2 or OAUTHBEARER)
        and select the folder. A token the server turns down — or Exchange's
        "User is authenticated but not connected" right after it took one — is
        tried once more on a new connection with a freshly fetched token; a
        second refusal puts the sign-in in "needs attention"."""
        token = self.access_token(None)
        for attempt in (1, 2):
            self.connect()
            try:
                with translated_errors(self.box, "signing in with an OAuth2 token"):
                    self.start_tls()
                    self.authenticate(token)
                self.token = token
                return self.select()
            except ImapError as exc:
                if temporary(exc):  # the server cannot check a token now: a later pass tries again
                    raise ImapError(str(exc)) from None
                if not refused_token(exc):
                    raise
                self.close()
                if attempt == 2:
                    self.tokens.refused(str(exc))
                    raise ImapLoginError(f"{exc}; a freshly fetched token was refused too: the app's permission "
                                         "or the mailbox's grant is missing") from None
                token = self.access_token(token)
        raise AssertionError("unreachable")

    def token_spent(self) -> None:
        """The server ended the session because its token ran out: the next one is fetched afresh."""
        if self.tokens is not None and self.token is not None:
            self.tokens.spent(self.token)

    def access_token(self, refused: str | None) -> str:
        if self.tokens is None:
            raise ImapLoginError(f"{where(self.box)}: auth = \"oauth2\" but no token source was given")
        try:
            return self.tokens.token(refused)
        except OAuth2Error as exc:
            raise ImapLoginError(f"{where(self.box)}: {exc}", attention=exc.attention) from None

    def authenticate(self, token: str) -> None:
        box = self.box
        if self.tokens.mechanism == "oauthbearer":
            self.client.oauthbearer_login(f"{box.username}", token)
        else:
            self.client.oauth2_login(box.username, token)

    def select(self) -> dict:
        box = self.box
        with translated_errors(box, f"selecting folder {box.folder!r}"):
            try:
                return self.client.select_folder(box.folder, readonly=self.readonly)
            except IMAPClientError as exc:
                if not isinstance(exc, IMAPClientAbortError):  # the server said no: perhaps no such folder
                    self.refuse_missing_folder()
                raise

    def refuse_missing_folder(self) -> None:
        """A folder that cannot be selected because there is none by that
        name: the error lists the folders there are and names the sent one
        (``folder = "Sent"`` where the server has ``INBOX.Sent``)."""
        try:
            folders = self.folders()
        except ImapError:
            return  # the server's own refusal says it
        if not has_folder(folders, self.box.folder):
            raise ImapError(f"{where(self.box)}: there is no folder {self.box.folder!r}; "
                            f"{describe_folders(folders)}") from None

    def folders(self) -> dict[str, tuple[bytes, ...]]:
        """Every selectable folder, with its attributes (RFC 6154 special uses among them)."""
        with translated_errors(self.box, "listing folders"):
            listed = self.client.list_folders()
        return {name: tuple(flags) for flags, _, name in listed
                if not any(flag.lower() == no.lower() for flag in flags for no in NO_SELECT)}

    def sent_folder(self) -> str | None:
        """The folder the server marks as sent mail (RFC 6154), if it marks one."""
        return find_sent(self.folders())

    def announces(self, capability: str) -> bool:
        with translated_errors(self.box, "reading the server's capabilities"):
            return self.client.has_capability(capability)

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.box.ca_file)

    def close(self) -> None:
        if self.client is None:
            return
        try:
            self.client.logout()
        except Exception:  # closing a broken connection: nothing left to save
            try:
                self.client.shutdown()
            except Exception:
                pass
        self.client = None

    def unseen_uids(self) -> list[int]:
        with translated_errors(self.box, "searching for unread messages"):
            return sorted(self.client.search(["UNSEEN"]))

    def newest_uid(self) -> int:
        """The highest UID in the folder now (0 when empty)."""
        if self.uidnext is not None:
            return self.uidnext - 1
        with translated_errors(self.box, "searching the folder"):
            return max(self.client.search(["ALL"]), default=0)

    def uids_after(self, uid: int) -> list[int]:
        """UIDs greater than ``uid``. ``UID n:*`` always returns the last
        message even when nothing is newer, hence the filter."""
        with translated_errors(self.box, "searching for new messages"):
            found = self.client.search(["UID", f"{uid + 1}:*"])
        return sorted(u for u in found if u > uid)

    def existing(self, uids: list[int]) -> set[int]:
        """Those of ``uids`` still in the folder (the others were expunged)."""
        if not uids:
            return set()
        with translated_errors(self.box, "searching for messages"):
            return set(self.client.search(["UID", ",".join(map(str, uids))])) & set(uids)

    def sizes(self, uids: list[int]) -> dict[int, int]:
        if not uids:
            return {}
        with translated_errors(self.box, "reading message sizes"):
            data = self.client.fetch(uids, ["RFC822.SIZE"])
        return {uid: int(item[b"RFC822.SIZE"]) for uid, item in data.items() if b"RFC822.SIZE" in item}

    def bodies(self, uids: list[int]) -> dict[int, bytes]:
        """The raw messages, fetched with BODY.PEEK[] so nothing is marked read."""
        if not uids:
            return {}
        with translated_errors(self.box, "fetching messages"):
            data = self.client.fetch(uids, ["BODY.PEEK[]"])
        return {uid: item[b"BODY[]"] for uid, item in data.items() if b"BODY[]" in item}

    def mark_seen(self, uids: list[int]) -> None:
        if not uids or self.readonly or not self.box.unread_only:  # read by UID: leadtap changes no flag
            return
        with translated_errors(self.box, "marking messages read"):
            self.client.add_flags(uids, [SEEN], silent=True)


def has_folder(folders: dict[str, tuple[bytes, ...]], name: str) -> bool:
    return name in folders or name.upper() == "INBOX" and "INBOX" in folders  # INBOX is any case (RFC 3501)


def find_sent(folders: dict[str, tuple[bytes, ...]]) -> str | None:
    return next((name for name, flags in folders.items() if SENT.lower() in (f.lower() for f in flags)), None)


def describe_folders(folders: dict[str, tuple[bytes, ...]]) -> str:
    """The folders there are, a sent one named first: what an operator can put in ``folder``."""
    names = sorted(folders, key=lambda name: (name.upper() != "INBOX", name.lower()))
    listed = ", ".join(repr(name) for name in names[:LISTED])
    more = f" and {len(names) - LISTED} more" if len(names) > LISTED else ""
    sent = find_sent(folders)
    said_sent = f"the sent folder (\\Sent) is {sent!r}; " if sent else ""
    return f"{said_sent}the folders are {listed}{more}" if names else "the server lists no folders"
