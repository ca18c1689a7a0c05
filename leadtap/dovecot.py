"""A throwaway Dovecot IMAP server in a temporary directory.

Used by the test suite, the benchmark and the demo: it listens on free
loopback ports (one plain, one TLS with a throwaway CA), lets any user name
log in with one password (each name is a fresh, empty mailbox) and is stopped (and its directory removed) on
``stop()``. Running as root in a sandbox needs a few facts respected: mail is
owned by the ``dovecot`` system user (the userdb must not hand out uid 0) and
``base_dir``/``state_dir``/``log_path`` live in the temporary directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DOVECOT_BINARY = "/usr/sbin/dovecot"


class DovecotUnavailable(RuntimeError):
    """Dovecot is not installed or did not start."""


@dataclass
class Dovecot:
    """Every user name logs in with ``password`` (a static passdb), so a test can
    take a fresh, empty mailbox just by using a new name."""

    password: str = "leadtap-test"
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="leadtap-dovecot-")))
    host: str = "127.0.0.1"
    port: int = 0
    tls_port: int = 0
    ca_pem: Path | None = None
    tls: bool = True  # a second, TLS listener with a throwaway CA (needs trustme)
    # False: LOGIN only over TLS (LOGINDISABLED on the plain listener, as Cyrus
    # by default). Dovecot takes a client on its own address for secure, so
    # this needs a host other than the one the client connects from (127.0.0.2).
    cleartext_login: bool = True
    # True: every folder lives under "INBOX." (Courier's and Cyrus's layout),
    # the sent folder INBOX.Sent marked \Sent (RFC 6154).
    folders_under_inbox: bool = False
    idle: bool = True  # False: IDLE is not announced (a server leadtap can only poll)
    # An RFC 7662 introspection URL: XOAUTH2 and OAUTHBEARER sign-ins are
    # checked there (Dovecot's oauth2 passdb); the password still works.
    oauth2_introspection_url: str | None = None
    # Or: tokens are JWTs checked locally against this RS256 public key (PEM, key id "k1").
    oauth2_jwt_public_key: str | None = None
    _process: subprocess.Popen | None = None

    def start(self, timeout: float = 15.0) -> "Dovecot":
        if not os.path.exists(DOVECOT_BINARY):
            raise DovecotUnavailable(f"{DOVECOT_BINARY} not found (apt-get install dovecot-imapd)")
        os.chmod(self.root, 0o755)  # Dovecot's own processes run as the dovecot user
        self.port, self.tls_port = free_port(), free_port()
        if self.tls:
            self._write_tls_files()
        conf = self.root / "dovecot.conf"
        conf.write_text(self._config())
        self._process = subprocess.Popen(
            [DOVECOT_BINARY, "-F", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        wait_for_port(self.host, self.port, timeout, self._process, self.root / "dovecot.log")
        if self.tls:
            wait_for_port(self.host, self.tls_port, timeout, self._process, self.root / "dovecot.log")
        return self

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Dovecot":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _write_tls_files(self) -> None:
        import trustme  # only the TLS listener needs it

        ca = trustme.CA()
        cert = ca.issue_cert(self.host, "localhost")
        cert.private_key_and_cert_chain_pem.write_to_path(str(self.root / "server.pem"))
        self.ca_pem = self.root / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_pem))

    def _config(self) -> str:
        mail_user = pwd.getpwnam("dovecot")
        mail_dir = self.root / "mail"
        mail_dir.mkdir(exist_ok=True)
        os.chown(mail_dir, mail_user.pw_uid, mail_user.pw_gid)
        for sub in ("run", "state"):
            (self.root / sub).mkdir(exist_ok=True)
        return f"""
protocols = imap
listen = {self.host}
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
info_log_path = {self.root}/dovecot.log
{self._ssl_config()}
disable_plaintext_auth = {"no" if self.cleartext_login else "yes"}
auth_mechanisms = plain login{" xoauth2 oauthbearer" if self.oauth2 else ""}
auth_failure_delay = 0
first_valid_uid = 1
mail_uid = {mail_user.pw_uid}
mail_gid = {mail_user.pw_gid}
mail_location = maildir:{mail_dir}/%u
default_login_user = dovenull
default_internal_user = dovecot
default_internal_group = dovecot
{self._oauth2_passdb()}passdb {{
  driver = static
  args = password={self.password}
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={mail_dir}/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.tls_port if self.tls else 0}
    ssl = yes
  }}
}}
service anvil {{
  chroot ={self._penalty_config()}
}}
service imap-login {{
  chroot =
}}
protocol imap {{
  mail_max_userip_connections = 100
{self._capability_config()}}}
{self._namespace_config()}"""

    @property
    def oauth2(self) -> bool:
        return bool(self.oauth2_introspection_url or self.oauth2_jwt_public_key)

    def _oauth2_passdb(self) -> str:
        if not self.oauth2:
            return ""
        (self.root / "dovecot-oauth2.conf.ext").write_text(self._oauth2_validation())
        return f"""passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {self.root}/dovecot-oauth2.conf.ext
}}
"""

    def _oauth2_validation(self) -> str:
        if self.oauth2_jwt_public_key:  # keys are looked up as shared/<azp>/<alg>/<kid>; fs drops "shared/"
            keys = self.root / "keys" / "default" / "RS256"
            keys.mkdir(parents=True, exist_ok=True)
            (keys / "k1").write_text(self.oauth2_jwt_public_key)
            os.chmod(self.root / "keys", 0o755)
            return f"""introspection_mode = local
local_validation_key_dict = fs:posix:prefix={self.root}/keys/
username_attribute = username
"""
        return f"""introspection_mode = post
introspection_url = {self.oauth2_introspection_url}
username_attribute = username
active_attribute = active
active_value = true
force_introspection = yes
"""


    def _penalty_config(self) -> str:
        """A refused token is followed at once by a sign-in with a fresh one: the
        auth penalty (2, 4, 8… s after each failure from an address) is off."""
        if not self.oauth2:
            return ""
        return "\n  unix_listener anvil-auth-penalty {\n    mode = 0\n  }"

    def _capability_config(self) -> str:
        if self.idle:
            return ""
        return "  imap_capability = IMAP4rev1 SASL-IR LITERAL+ ID ENABLE NAMESPACE UIDPLUS SPECIAL-USE\n"

    def _namespace_config(self) -> str:
        if not self.folders_under_inbox:
            return ""
        return """
namespace inbox {
  inbox = yes
  prefix = INBOX.
  separator = .
  mailbox Sent {
    special_use = \\Sent
    auto = create
  }
}
"""


    def _ssl_config(self) -> str:
        if not self.tls:
            return "ssl = no"
        return f"ssl = yes\nssl_cert = <{self.root}/server.pem\nssl_key = <{self.root}/server.pem"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            err = process.stderr.read().decode(errors="replace") if process.stderr else ""
            detail = log.read_text(errors="replace") if log.exists() else ""
            raise DovecotUnavailable(f"dovecot exited: {err.strip()} {detail.strip()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise DovecotUnavailable(f"dovecot did not listen on {host}:{port} within {timeout}s")
