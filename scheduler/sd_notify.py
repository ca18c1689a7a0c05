"""The systemd notify protocol: datagrams to ``$NOTIFY_SOCKET`` (no library needed)."""

from __future__ import annotations

import socket
from typing import Mapping


class Notifier:
    """Sends READY=1, WATCHDOG=1, STATUS=…, STOPPING=1; does nothing outside systemd."""

    def __init__(self, environ: Mapping[str, str]):
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = environ.get("WATCHDOG_USEC", "")
        self.watchdog_seconds = int(usec) / 1_000_000 if usec.isdigit() and int(usec) > 0 else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> None:
        if not self.address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)  # a listener that stopped reading must never hang the daemon
            try:
                sock.sendto("\n".join(fields).encode(), self.address)
            except OSError:
                pass  # systemd went away, or its queue is full: nothing to tell

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def reloading(self) -> None:
        self.send("RELOADING=1", "STATUS=reloading the configuration")
