"""The IMAP adapter: one mailbox folder, opened, read in batches, closed.

Everything comes in through the constructor; every imapclient, socket and TLS
error leaves this module as ``ImapError`` (or ``ImapLoginError``) with a
message an operator can act on and never the password.
"""

from __future__ import annotations

import socket
import ssl
from contextlib import contextmanager
from typing import Iterator

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from leadtap.core.config.load import MailboxConfig
from leadtap.core.errors import ImapError, ImapLoginError

SEEN = b"\\Seen"


@contextmanager
def translated_errors(box: MailboxConfig, doing: str) -> Iterator[None]:
    where = f"mailbox {box.name!r} ({box.host}:{box.port})"
    try:
        yield
    except ImapError:
        raise
    except LoginError as exc:
        raise ImapLoginError(f"{where}: login refused for {box.username!r}: {server_text(exc)}") from None
    except ssl.SSLError as exc:
        raise ImapError(f"{where}: TLS failed while {doing}: {exc.reason or exc}") from None
    except socket.timeout:
        raise ImapError(f"{where}: timed out while {doing}") from None
    except (OSError, EOFError) as exc:
        raise ImapError(f"{where}: connection failed while {doing}: {exc.strerror or exc}") from None
    except IMAPClientError as exc:
        raise ImapError(f"{where}: server refused while {doing}: {server_text(exc)}") from None


def server_text(exc: Exception) -> str:
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text


class ImapMailbox:
    """A selected folder of one configured mailbox."""

    def __init__(self, box: MailboxConfig, timeout: float, readonly: bool | None = None):
        self.box = box
        self.timeout = timeout
        self.readonly = (not box.unread_only) if readonly is None else readonly
        self.client: IMAPClient | None = None
        self.uidvalidity = 0
        self.uidnext: int | None = None

    def __enter__(self) -> "ImapMailbox":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        box = self.box
        password = box.password.reveal()  # read now, before any connection: a ConfigError if it cannot be
        with translated_errors(box, "connecting"):
            self.client = IMAPClient(
                box.host,
                port=box.port,
                ssl=box.security == "tls",
                ssl_context=self.tls_context() if box.security == "tls" else None,
                timeout=self.timeout,
            )
        with translated_errors(box, "logging in"):
            if box.security == "starttls":
                self.client.starttls(self.tls_context())
            self.client.login(box.username, password)
        with translated_errors(box, f"selecting folder {box.folder!r}"):
            status = self.client.select_folder(box.folder, readonly=self.readonly)
        self.uidvalidity = int(status[b"UIDVALIDITY"])
        self.uidnext = int(status[b"UIDNEXT"]) if b"UIDNEXT" in status else None

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
        if not uids or self.readonly:
            return
        with translated_errors(self.box, "marking messages read"):
            self.client.add_flags(uids, [SEEN], silent=True)
