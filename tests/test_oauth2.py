"""OAuth2 sign-in end to end, on real servers: the test authorization server
(tests/oauth_server.py), Dovecot with its oauth2 passdb checking every token
by RFC 7662 introspection, aiosmtpd taking AUTH XOAUTH2, and the database
(SQLite; PostgreSQL where workers share a token)."""

from __future__ import annotations

import io
import json
import signal
import threading
import time
import uuid
from datetime import timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import text

from leadtap.bootstrap import build_app
from leadtap.core.errors import MailSendError, OAuth2Error
from leadtap.core.store.engine import Database, upgrade_schema
from leadtap.dovecot import Dovecot
from leadtap.core.logs import configure_logging
from tests.conftest import started
from tests.helpers import Mailbox, enquiry, run_leadtap, toml_value, write_config
from tests.oauth_server import AuthorizationServer
from tests.smtp import OAuthRecorder, SmtpServer

SECRET = "Kx7-client-secret-unmistakable"
KEY = "k" * 44


@pytest.fixture(scope="module")
def auth_server():
    with AuthorizationServer() as server:
        yield server


@pytest.fixture(autouse=True)
def normal(auth_server):
    """Each test starts with the server up, fast and answering."""
    auth_server.down, auth_server.slow, auth_server.refuse_with, auth_server.lifetime = False, 0.0, None, 3600.0
    auth_server.rotate, auth_server.said_lifetime = True, None
    auth_server.echo, auth_server.dribble, auth_server.gateway_errors = False, 0.0, 0
    auth_server.requests.clear()
    configure_logging()  # to this test's stderr (an earlier test's may be closed)
    yield


@pytest.fixture(scope="module")
def oauth_dovecot(auth_server):
    yield from started(Dovecot(tls=False, oauth2_introspection_url=f"{auth_server.url}/introspect"))


@pytest.fixture
def user(oauth_dovecot) -> Mailbox:
    return Mailbox(oauth_dovecot, f"u{uuid.uuid4().hex[:10]}@example.com", oauth_dovecot.password)


def oauth2_section(box: Mailbox, table: dict, name: str = "sales", **overrides) -> str:
    values = {"name": name, "host": box.server.host, "port": box.server.port, "security": "plain",
              "username": box.user, "auth": "oauth2", "templates": ["contact-form"], **overrides}
    return ("[[mailboxes]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items())
            + "[mailboxes.oauth2]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items()))


def client_credentials(auth_server, client_id: str, **extra) -> dict:
    return {"provider": "generic", "grant": "client_credentials", "token_url": auth_server.token_url,
            "scope": "imap", "client_id": client_id, "client_secret_file": "client.secret", **extra}


def app_for(tmp_path, mailboxes: str, extra: str = "", url: str | None = None):
    (tmp_path / "client.secret").write_text(SECRET + "\n")
    (tmp_path / "token.key").write_text(KEY + "\n")
    url = url or f"sqlite:///{tmp_path / 'leadtap.db'}"
    config = write_config(tmp_path / "leadtap.toml", url, mailboxes,
                          extra=f'[oauth2]\ntoken_key_file = "token.key"\n{extra}')
    app = build_app(str(config))
    upgrade_schema(app.db.engine)
    return app


def leads(app) -> int:
    with app.db.engine.connect() as connection:
        return connection.scalar(text("select count(*) from leads"))


def token_row(app) -> dict:
    with app.db.engine.connect() as connection:
        return dict(connection.execute(text("select * from oauth_tokens")).mappings().one())


def test_an_app_only_mailbox_is_polled_with_one_token_reused_and_stored_encrypted(tmp_path, auth_server, user):
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})
    app = app_for(tmp_path, oauth2_section(user, client_credentials(auth_server, client)))
    user.append(enquiry(email="first@acme.test"))
    [report] = app.ingest_mailboxes()
    assert not report.failed, report.error
    user.append(enquiry(email="second@acme.test"))
    [report] = build_app(str(app.config.path)).ingest_mailboxes()  # another process: the stored token
    assert not report.failed, report.error
    assert leads(app) == 2
    assert auth_server.count("client_credentials") == 1
    row = token_row(app)
    issued = [t for t, i in auth_server.access.items() if i.username == user.user]
    assert issued and issued[0].encode() not in bytes(row["access_token"])
    assert row["refreshes"] == 1 and not row["attention"] and row["error"] is None


def test_a_token_the_server_refuses_is_fetched_afresh_once(tmp_path, auth_server, user):
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})
    app = app_for(tmp_path, oauth2_section(user, client_credentials(auth_server, client)))
    app.ingest_mailboxes()
    auth_server.expire_access()  # revoked early: leadtap's copy still looks valid for an hour
    user.append(enquiry())
    [report] = app.ingest_mailboxes()
    assert not report.failed, report.error
    assert leads(app) == 1 and auth_server.count("client_credentials") == 2


def test_a_mailbox_the_app_may_not_open_needs_attention_and_the_others_go_on(tmp_path, auth_server, user,
                                                                              oauth_dovecot):
    other = Mailbox(oauth_dovecot, f"u{uuid.uuid4().hex[:10]}@example.com", oauth_dovecot.password)
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})  # no permission on the other mailbox
    table = client_credentials(auth_server, client)
    app = app_for(tmp_path, oauth2_section(user, table) + oauth2_section(other, table, name="support"))
    user.append(enquiry())
    other.append(enquiry(email="lost@acme.test"))
    sales, support = app.ingest_mailboxes()
    assert not sales.failed and leads(app) == 1
    assert support.failed and "a freshly fetched token was refused too" in support.error
    with app.db.engine.connect() as connection:
        rows = connection.execute(text("select username, attention, error from oauth_tokens")).all()
    assert {(r.username, r.attention) for r in rows} == {(user.user, False), (other.user, True)}


def test_a_wrong_client_secret_says_what_the_provider_means(tmp_path, auth_server, user):
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, "the-real-secret", mailboxes={user.user})
    app = app_for(tmp_path, oauth2_section(user, client_credentials(auth_server, client)))
    [report] = app.ingest_mailboxes()
    assert report.failed
    assert "invalid_client" in report.error and "the client secret is wrong" in report.error
    assert "Trace ID" not in report.error and SECRET not in report.error
    row = token_row(app)
    assert row["attention"] and "invalid_client" in row["error"]


def test_the_token_endpoint_down_waits_then_recovers(tmp_path, auth_server, user):
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})
    app = app_for(tmp_path, oauth2_section(user, client_credentials(auth_server, client)))
    now = [1000.0]
    app.tokens.monotonic = lambda: now[0]
    auth_server.down = True
    [report] = app.ingest_mailboxes()
    assert report.failed and "HTTP 503" in report.error
    asked = auth_server.count("client_credentials")
    [report] = app.ingest_mailboxes()  # within the backoff: the endpoint is not asked again
    assert "tried again in" in report.error and auth_server.count("client_credentials") == asked
    assert not token_row(app)["attention"]
    auth_server.down = False
    now[0] += 10  # past the first backoff (5 s, jitter ±20 %)
    user.append(enquiry())
    [report] = app.ingest_mailboxes()
    assert not report.failed, report.error
    assert leads(app) == 1 and token_row(app)["error"] is None


def test_a_rotated_refresh_token_is_saved_and_the_old_one_used_again_needs_sign_in(tmp_path, auth_server, user):
    from leadtap.auth.cipher import TokenCipher
    from leadtap.core.store import oauth_tokens
    from leadtap.core.store.engine import utcnow

    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, None)  # a public client: no secret
    table = {"provider": "generic", "grant": "refresh_token", "token_url": auth_server.token_url, "scope": "imap",
             "client_id": client}
    app = app_for(tmp_path, oauth2_section(user, table))
    [report] = app.ingest_mailboxes()
    assert report.failed and "not signed in yet; run: leadtap auth login --mailbox sales" in report.error
    first = auth_server.issue_refresh(user.user, client, "imap")
    box = app.config.mailboxes[0]
    credential, cipher = box.oauth2.credential(box.username), TokenCipher(KEY)

    def signed_in_with(refresh_token: str) -> None:
        with app.db.transaction() as session:
            oauth_tokens.sign_in(session, credential, box.username, "refresh_token",
                                 cipher.seal(refresh_token, credential), None, None, utcnow())
        app.tokens.cache.clear()

    signed_in_with(first)
    user.append(enquiry())
    [report] = app.ingest_mailboxes()
    assert not report.failed, report.error
    stored = cipher.open(bytes(token_row(app)["refresh_token"]), credential)
    assert stored != first and stored in auth_server.refresh  # the rotated one, saved at once
    signed_in_with(first)  # an old copy of the grant (a restored backup, another install)
    [report] = app.ingest_mailboxes()
    assert report.failed and "invalid_grant" in report.error
    assert "run: leadtap auth login --mailbox sales" in report.error
    assert token_row(app)["attention"]
    signed_in_with(stored)  # the person signs in again: the worker tries at once, not after its wait
    user.append(enquiry(email="after@acme.test"))
    [report] = app.ingest_mailboxes()
    assert not report.failed, report.error
    assert leads(app) == 2 and not token_row(app)["attention"]


def test_a_service_account_signs_in_with_a_jwt_for_the_mailbox(tmp_path, auth_server, user):
    table = {**service_account_table(tmp_path, auth_server), "scope": "https://mail.google.com/",
             "mechanism": "oauthbearer"}
    app = app_for(tmp_path, oauth2_section(user, table))
    user.append(enquiry())
    [report] = app.ingest_mailboxes()
    assert not report.failed, report.error
    assert leads(app) == 1
    assert auth_server.count("urn:ietf:params:oauth:grant-type:jwt-bearer") >= 1


def test_smtp_signs_in_with_xoauth2_and_a_refused_token_is_fetched_afresh(tmp_path, auth_server, user):
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={"crm@example.com"})

    def introspect(token: str) -> str | None:
        import time

        issued = auth_server.access.get(token)
        return issued.username if issued and issued.expires > time.time() else None

    with SmtpServer(OAuthRecorder(introspect)) as smtp:
        table = client_credentials(auth_server, client, scope="smtp")
        extra = (f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "plain"\nusername = "crm@example.com"\n'
                 f'from = "leadtap <crm@example.com>"\nauth = "oauth2"\n[smtp.oauth2]\n'
                 + "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items()))
        app = app_for(tmp_path, "", extra=extra)
        with app.mailer() as mailer:
            mailer.send(letter("first"))
        auth_server.expire_access()
        with app.mailer() as mailer:
            mailer.send(letter("second"))
        assert [m["Subject"] for m in smtp.messages] == ["first", "second"]
        assert smtp.handler.signed_in == ["crm@example.com", "crm@example.com"]
        assert auth_server.count("client_credentials") == 2
        auth_server.add_client(client, SECRET, mailboxes={"someone-else@example.com"})
        auth_server.expire_access()
        with pytest.raises(MailSendError) as refused, app.mailer() as mailer:
            mailer.send(letter("third"))
        assert "535" in str(refused.value) and refused.value.sweep_wide


def letter(subject: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "crm@example.com", "ana@example.com", subject
    message.set_content("hello")
    return message


@pytest.mark.postgres
def test_two_workers_on_postgresql_refresh_once_and_share_the_token(tmp_path, auth_server, user, postgres_url):
    from leadtap.auth.cipher import TokenCipher
    from leadtap.auth.tokens import SignIn, TokenSource

    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})
    app = app_for(tmp_path, oauth2_section(user, client_credentials(auth_server, client)), url=postgres_url)
    box = app.config.mailboxes[0]
    sign_in = SignIn("mailbox 'sales'", box.username, box.oauth2, "leadtap auth login --mailbox sales")
    auth_server.slow = 0.5  # both workers ask while the first request is in flight
    sources = [TokenSource(Database(postgres_url), lambda: TokenCipher(KEY), f"worker-{n}") for n in (1, 2)]
    tokens, start = [], threading.Barrier(2)

    def fetch(source):
        start.wait()
        tokens.append(source.access_token(sign_in))

    threads = [threading.Thread(target=fetch, args=(s,)) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(tokens) == 2 and tokens[0] == tokens[1]
    assert auth_server.count("client_credentials") == 1


def test_no_token_or_secret_reaches_a_log_line(tmp_path, auth_server, user):
    stream = io.StringIO()
    configure_logging("debug", stream=stream)
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})
    app = app_for(tmp_path, oauth2_section(user, client_credentials(auth_server, client)))
    user.append(enquiry())
    app.ingest_mailboxes()
    auth_server.expire_access()
    auth_server.refuse_with = "invalid_client"
    app.ingest_mailboxes()
    logged = stream.getvalue()
    assert "ingest" in logged or "poll" in logged or logged  # something was logged
    assert SECRET not in logged and KEY not in logged
    assert not any(token in logged for token in list(auth_server.access) + list(auth_server.refresh))


# --- the command line: auth login, status, logout; check ----------------------------------------------------


def cli_config(tmp_path, mailboxes: str, extra: str = ""):
    (tmp_path / "client.secret").write_text(SECRET + "\n")
    (tmp_path / "token.key").write_text(KEY + "\n")
    config = write_config(tmp_path / "leadtap.toml", f"sqlite:///{tmp_path / 'leadtap.db'}", mailboxes,
                          extra=f'[oauth2]\ntoken_key_file = "token.key"\n{extra}')
    assert run_leadtap("db", "upgrade", config=config).returncode == 0
    return config


def test_a_person_signs_in_by_device_code_and_the_mailbox_is_polled(tmp_path, auth_server, user):
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, None)
    auth_server.authorize_as = user.user
    table = {"provider": "generic", "grant": "refresh_token", "token_url": auth_server.token_url, "scope": "imap",
             "client_id": client, "device_url": f"{auth_server.url}/devicecode"}
    config = cli_config(tmp_path, oauth2_section(user, table) + oauth2_section(user, table, name="sent",
                                                                                kind="sent", folder="INBOX",
                                                                                templates=[]))
    status = run_leadtap("auth", "status", config=config)
    assert status.returncode == 1 and "not signed in — run: leadtap auth login --mailbox sales" in status.stdout
    done = run_leadtap("auth", "login", "--mailbox", "sales", config=config)
    assert done.returncode == 0, done.stderr
    assert "enter the code" in done.stdout and "waiting for the sign-in" in done.stdout
    assert f"signed in as {user.user}" in done.stdout and "shared with mailbox 'sent'" in done.stdout
    user.append(enquiry())
    polled = run_leadtap("poll", "--mailbox", "sales", config=config)
    assert polled.returncode == 0, polled.stderr
    assert auth_server.count("refresh_token") == 0  # the sign-in's own access token served
    status = run_leadtap("auth", "status", config=config)
    assert status.returncode == 0 and status.stdout.count(": ok — token valid until") == 2
    checked = run_leadtap("check", config=config)
    assert f"signed in with an OAuth2 token (XOAUTH2) as {user.user}" in checked.stdout
    out = run_leadtap("auth", "logout", "--mailbox", "sales", config=config)
    assert "tokens forgotten (also for mailbox 'sent'" in out.stdout
    assert "not signed in" in run_leadtap("auth", "status", config=config).stdout
    for output in (done, polled, status, checked, out):
        assert not any(t in output.stdout + output.stderr for t in list(auth_server.access) + list(auth_server.refresh))


def test_a_person_signs_in_by_pasting_the_address_the_browser_went_to(tmp_path, auth_server, user):
    import subprocess
    import sys
    from urllib.request import HTTPRedirectHandler, build_opener
    from urllib.error import HTTPError

    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET)
    auth_server.authorize_as = user.user
    table = {"provider": "generic", "grant": "refresh_token", "token_url": auth_server.token_url, "scope": "imap",
             "client_id": client, "client_secret_file": "client.secret",
             "authorize_url": f"{auth_server.url}/authorize"}
    config = cli_config(tmp_path, oauth2_section(user, table))
    process = subprocess.Popen([sys.executable, "-m", "leadtap", "--config", str(config), "auth", "login",
                                "--mailbox", "sales"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    lines = []
    while not any(line.startswith(auth_server.url) for line in lines):
        lines.append(process.stdout.readline().strip())
    address = next(line for line in lines if line.startswith(auth_server.url))
    assert "code_challenge_method=S256" in address and "login_hint=" in address

    class NoRedirect(HTTPRedirectHandler):
        def redirect_request(self, *args):
            return None

    try:
        build_opener(NoRedirect).open(address)
        raise AssertionError("the authorization server did not redirect")
    except HTTPError as redirect:  # the browser is sent to http://127.0.0.1:1/?code=… and shows an error
        went_to = redirect.headers["Location"]
    out, err = process.communicate(went_to + "\n", timeout=30)
    assert process.returncode == 0, err
    assert f"signed in as {user.user}" in out
    user.append(enquiry())
    assert run_leadtap("poll", config=config).returncode == 0
    assert "(1 lead)" in run_leadtap("leads", "list", config=config).stdout


def test_login_refuses_what_cannot_sign_in(tmp_path, auth_server, user):
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})
    config = cli_config(tmp_path, oauth2_section(user, client_credentials(auth_server, client))
                        + user.section(name="plain"))
    app_only = run_leadtap("auth", "login", "--mailbox", "sales", config=config)
    assert app_only.returncode == 2 and "signs in as an app" in app_only.stderr
    assert "with a password, not OAuth2" in run_leadtap("auth", "login", "--mailbox", "plain", config=config).stderr
    assert "no mailbox 'nope'" in run_leadtap("auth", "logout", "--mailbox", "nope", config=config).stderr
    assert "does not sign in with OAuth2" in run_leadtap("auth", "login", "--smtp", config=config).stderr


# --- leadtap run: push through token expiries, as Exchange ends sessions ----------------------------------------


@pytest.mark.parametrize("said_lifetime", [None, 3600.0], ids=["renewed-before-expiry", "cut-by-the-server"])
def test_run_keeps_push_through_token_expiry_with_every_message_a_lead_once(tmp_path, auth_server, user,
                                                                             said_lifetime):
    """Tokens live 6 s; the proxy ends each session at its token's expiry.
    Told the truth, leadtap starts a new session before (1.5 s early); told
    an hour, it is cut by the BYE and comes back with a fresh token."""
    from tests.imap_proxy import ExchangeLikeProxy
    from tests.test_daemon import count, start_run, wait_for

    auth_server.lifetime, auth_server.said_lifetime = 6.0, said_lifetime
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})

    def expiry_of(token: str):
        issued = auth_server.access.get(token)
        return issued.expires if issued else None

    with ExchangeLikeProxy(user.server.port, expiry_of) as proxy:
        config = cli_config(tmp_path, oauth2_section(user, client_credentials(auth_server, client), port=proxy.port,
                                                     poll_interval="1h"))
        process = start_run(config)
        sent = 0
        try:
            wait_for(lambda: auth_server.count("client_credentials") >= 1, what="the first token")
            deadline = time.monotonic() + 16  # more than two token lifetimes
            while time.monotonic() < deadline:
                user.append(enquiry(email=f"c{sent}@acme.test"))
                sent += 1
                time.sleep(0.8)
            url = f"sqlite:///{tmp_path / 'leadtap.db'}"
            wait_for(lambda: count(url, "select count(*) from leads") >= sent, timeout=30, what="every lead")
        finally:
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=20)
        assert count(url, "select count(distinct email) from leads") == count(url, "select count(*) from leads") == sent
        assert auth_server.count("client_credentials") >= 3  # renewed across the expiries
        assert "idle_lost" not in err and "pass_failed" not in err, err[-3000:]
        assert "mailbox_needs_attention" not in err
        if said_lifetime:
            assert proxy.cut >= 2 and err.count("idle_token_expired") >= 2, err[-3000:]
        else:
            assert proxy.cut == 0 and "idle_token_expired" not in err


def test_run_says_a_refused_sign_in_once_and_the_other_mailboxes_go_on(tmp_path, auth_server, user, oauth_dovecot):
    from urllib.request import urlopen

    from leadtap.dovecot import free_port
    from tests.test_daemon import NotifySocket, count, start_run, wait_for

    other = Mailbox(oauth_dovecot, f"u{uuid.uuid4().hex[:10]}@example.com", oauth_dovecot.password)
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})  # no permission on the other mailbox
    table = client_credentials(auth_server, client)
    port = free_port()
    config = cli_config(tmp_path, oauth2_section(user, table, poll_interval="1s", idle=False)
                        + oauth2_section(other, table, name="support", poll_interval="1s", idle=False),
                        extra=f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    notify = NotifySocket(tmp_path / "notify.sock")
    process = start_run(config, notify)
    url = f"sqlite:///{tmp_path / 'leadtap.db'}"
    try:
        user.append(enquiry())
        wait_for(lambda: count(url, "select count(*) from leads") == 1, what="the sales lead")
        wait_for(lambda: "needs attention: support" in " ".join(notify.heard), what="STATUS= naming support")

        def refused_polls() -> int:
            text_ = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            line = next((l for l in text_.splitlines() if l.startswith('leadtap_poll_errors_total{mailbox="support"}')),
                        "0 0")
            return int(float(line.split()[-1]))

        wait_for(lambda: refused_polls() >= 4, what="four refused polls")  # said once, not four times
        metrics = urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
        notify.close()
    assert 'leadtap_mailbox_auth_ok{mailbox="support"} 0.0' in metrics
    assert 'leadtap_mailbox_auth_ok{mailbox="sales"} 1.0' in metrics
    assert err.count("mailbox_needs_attention") == 1, err[-2000:]
    assert "a freshly fetched token was refused too" in err
    assert SECRET not in err and not any(t in err for t in auth_server.access)


# --- what a hostile review found: each one proved fixed ----------------------------------------------------------


def refresh_sign_in(app, auth_server, client: str, username: str):
    """The mailbox's sign-in, signed in as auth login leaves it (a refresh token, no access token)."""
    from leadtap.auth.cipher import TokenCipher
    from leadtap.auth.tokens import SignIn
    from leadtap.core.store import oauth_tokens
    from leadtap.core.store.engine import utcnow

    box = app.config.mailboxes[0]
    sign_in = SignIn("mailbox 'sales'", box.username, box.oauth2, "leadtap auth login --mailbox sales")
    cipher = TokenCipher(KEY)
    with app.db.transaction() as session:
        oauth_tokens.sign_in(session, sign_in.credential, username, "refresh_token",
                             cipher.seal(auth_server.issue_refresh(username, client, "imap"), sign_in.credential),
                             None, None, utcnow())
    return sign_in


@pytest.mark.postgres
def test_a_worker_that_read_the_row_before_another_refreshed_uses_its_result(tmp_path, auth_server, user,
                                                                             postgres_url):
    """Worker 2 reads the row (the refresh token) just before worker 1 refreshes and rotates it: worker 2's
    claim fails, it reads again and takes worker 1's token — never refreshing with the rotated token.
    (PostgreSQL: several workers; SQLite has one, and its reader would hold the writer off.)"""
    database_url = postgres_url
    from leadtap.auth.cipher import TokenCipher
    from leadtap.auth.tokens import TokenSource

    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, None)
    table = {"provider": "generic", "grant": "refresh_token", "token_url": auth_server.token_url, "scope": "imap",
             "client_id": client}
    app = app_for(tmp_path, oauth2_section(user, table), url=database_url)
    sign_in = refresh_sign_in(app, auth_server, client, user.user)
    first = TokenSource(Database(database_url), lambda: TokenCipher(KEY), "worker-1")

    class Interrupted(TokenSource):
        def refresh_token_of(self, sign_in_, row):
            read = super().refresh_token_of(sign_in_, row)
            if not getattr(self, "interrupted", False):
                self.interrupted = True
                first.access_token(sign_in)  # worker 1 refreshes (and rotates) right now
            return read

    second = Interrupted(Database(database_url), lambda: TokenCipher(KEY), "worker-2")
    assert second.access_token(sign_in) == first.access_token(sign_in)
    assert auth_server.count("refresh_token") == 1
    row = token_row(app)
    assert not row["attention"] and row["error"] is None


def test_a_sign_in_the_server_cannot_check_now_is_not_a_refusal(tmp_path, auth_server, user):
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})
    app = app_for(tmp_path, oauth2_section(user, client_credentials(auth_server, client)))
    app.ingest_mailboxes()
    auth_server.down = True  # Dovecot's introspection fails: "[UNAVAILABLE] Temporary authentication failure"
    [report] = app.ingest_mailboxes()
    assert report.failed and "UNAVAILABLE" in report.error and not report.sign_in_refused
    assert not token_row(app)["attention"] and auth_server.count("client_credentials") == 1
    auth_server.down = False
    user.append(enquiry())
    [report] = app.ingest_mailboxes()
    assert not report.failed and leads(app) == 1


def test_a_changed_token_key_fetches_an_app_a_new_token(tmp_path, auth_server, user):
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})
    app = app_for(tmp_path, oauth2_section(user, client_credentials(auth_server, client)))
    app.ingest_mailboxes()
    (tmp_path / "token.key").write_text("another key, as long as a key must be: 0123456789")
    user.append(enquiry())
    [report] = build_app(str(app.config.path)).ingest_mailboxes()
    assert not report.failed, report.error
    assert leads(app) == 1 and auth_server.count("client_credentials") == 2


def test_an_endpoint_repeating_the_request_never_shows_the_secret(tmp_path, auth_server, user):
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, "not-" + SECRET, mailboxes={user.user})
    auth_server.echo = True
    app = app_for(tmp_path, oauth2_section(user, client_credentials(auth_server, client)))
    [report] = app.ingest_mailboxes()
    assert "invalid_client" in report.error and "request was:" in report.error
    assert SECRET not in report.error and SECRET not in (token_row(app)["error"] or "")


def test_a_token_endpoint_that_redirects_or_dribbles_is_named(tmp_path, auth_server, user):
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})
    moved = client_credentials(auth_server, client, token_url=f"{auth_server.url}/moved")
    app = app_for(tmp_path, oauth2_section(user, moved))
    [report] = app.ingest_mailboxes()
    assert "redirects elsewhere: is the token_url right?" in report.error and token_row(app)["attention"]
    auth_server.dribble = 0.2  # a byte every 0.2 s: each read is quick, the answer never ends
    slow = app_for(tmp_path / "slow" if (tmp_path / "slow").mkdir() is None else tmp_path,
                   oauth2_section(user, client_credentials(auth_server, client, timeout="1s")))
    started = time.monotonic()
    [report] = slow.ingest_mailboxes()
    assert "did not answer within 1s" in report.error and time.monotonic() - started < 5
    assert not token_row(slow)["attention"]


def test_a_service_account_key_that_is_not_one_is_named(tmp_path, auth_server, user):
    (tmp_path / "sa.json").write_text(json.dumps({"client_email": "x@p.iam.gserviceaccount.com",
                                                  "private_key": "-----BEGIN PRIVATE KEY-----\nnope\n"}))
    table = {"provider": "generic", "grant": "service_account", "token_url": auth_server.token_url,
             "scope": "imap", "key_file": "sa.json"}
    app = app_for(tmp_path, oauth2_section(user, table))
    [report] = app.ingest_mailboxes()
    assert "its private_key is not an RSA key in PEM" in report.error and token_row(app)["attention"]


def test_device_sign_in_waits_out_a_gateway_error_and_a_refusal_is_said(auth_server):
    from leadtap.auth.login import Prompt, sign_in
    from leadtap.core.config.oauth2 import OAuth2Config
    from leadtap.core.errors import OAuth2Error

    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, None)
    auth_server.authorize_as = "jo@example.com"
    config = OAuth2Config("generic", "refresh_token", auth_server.token_url, "imap", client_id=client,
                          device_url=f"{auth_server.url}/devicecode", authorize_url=f"{auth_server.url}/authorize")
    said, now = [], [0.0]
    auth_server.gateway_errors = 1
    grant = sign_in(config, "jo@example.com", Prompt(said.append, lambda _: ""), "device",
                    clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert grant.refresh_token and any("answered HTTP 502" in line for line in said)
    pasted = "http://127.0.0.1:8765/?error=access_denied&error_description=The+user+said+no"
    with pytest.raises(OAuth2Error) as refused:
        sign_in(config, "jo@example.com", Prompt(said.append, lambda _: pasted), "paste")
    assert str(refused.value) == "the sign-in was refused: access_denied: The user said no"


def test_an_unreachable_database_is_a_passing_trouble_not_a_crash(auth_server):
    from leadtap.auth.cipher import TokenCipher
    from leadtap.auth.tokens import SignIn, TokenSource
    from leadtap.core.config.oauth2 import OAuth2Config
    from leadtap.core.errors import OAuth2Error

    config = OAuth2Config("generic", "client_credentials", auth_server.token_url, "imap", client_id="a")
    source = TokenSource(Database("postgresql+psycopg://postgres@127.0.0.1:1/none"), lambda: TokenCipher(KEY), "w")
    with pytest.raises(OAuth2Error) as caught:
        source.access_token(SignIn("mailbox 'sales'", "jo@example.com", config, "-"))
    assert caught.value.code == "database" and not caught.value.attention


@pytest.mark.parametrize("stranded", [1, 2])
def test_exchanges_authenticated_but_not_connected_counts_as_a_refused_sign_in(tmp_path, auth_server, user,
                                                                              stranded):
    from tests.imap_proxy import ExchangeLikeProxy

    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})
    with ExchangeLikeProxy(user.server.port, lambda token: None) as proxy:
        app = app_for(tmp_path, oauth2_section(user, client_credentials(auth_server, client), port=proxy.port))
        user.append(enquiry())
        proxy.not_connected = stranded
        [report] = app.ingest_mailboxes()
    assert auth_server.count("client_credentials") == 2  # the first token, then a fresh one
    if stranded == 1:
        assert not report.failed and leads(app) == 1
    else:
        assert report.sign_in_refused and "authenticated but not connected" in report.error
        assert "a freshly fetched token was refused too" in report.error and token_row(app)["attention"]


def test_an_owner_email_goes_out_through_smtp_signed_in_with_a_token(tmp_path, auth_server, user):
    """A poll of an OAuth2 mailbox makes a lead; its new-lead email leaves through the outbox over
    SMTP signed in with a token: both sign-ins, one run."""
    def introspect(token: str) -> str | None:
        issued = auth_server.access.get(token)
        return issued.username if issued and issued.expires > time.time() else None

    client, sender = f"app-{uuid.uuid4().hex[:6]}", f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})
    auth_server.add_client(sender, SECRET, mailboxes={"crm@example.com"})  # (a token here serves one mailbox)
    with SmtpServer(OAuthRecorder(introspect)) as smtp:
        table = client_credentials(auth_server, client)
        extra = (f'[notifications]\nnew_lead = "new_lead"\n'
                 f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "plain"\nusername = "crm@example.com"\n'
                 f'from = "leadtap <crm@example.com>"\nauth = "oauth2"\n[smtp.oauth2]\n'
                 + "".join(f"{k} = {toml_value(v)}\n" for k, v in client_credentials(auth_server, sender).items()))
        config = cli_config(tmp_path, oauth2_section(user, table), extra=extra)
        user.append(enquiry())
        polled = run_leadtap("poll", config=config)
        assert polled.returncode == 0, polled.stdout + polled.stderr
        assert "1 sent" in polled.stdout, polled.stdout
        assert smtp.handler.signed_in == ["crm@example.com"] and len(smtp.messages) == 1
        assert auth_server.count("client_credentials") == 2  # one sign-in for IMAP, one for SMTP


# --- tokens as JWTs, checked by Dovecot itself (introspection_mode = local) ---------------------------------------


@pytest.fixture(scope="module")
def jwt_servers():
    from cryptography.hazmat.primitives.asymmetric import rsa

    with AuthorizationServer(jwt_key=rsa.generate_private_key(public_exponent=65537, key_size=2048)) as server:
        for dovecot in started(Dovecot(tls=False, oauth2_jwt_public_key=server.jwt_public_key())):
            yield server, dovecot


def test_a_jwt_checked_by_the_server_itself_signs_in_and_an_expired_one_is_replaced(tmp_path, jwt_servers):
    auth, server = jwt_servers
    user = Mailbox(server, f"u{uuid.uuid4().hex[:10]}@example.com", server.password)
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth.add_client(client, SECRET, mailboxes={user.user})
    auth.lifetime, auth.said_lifetime = 1.0, 3600.0  # Dovecot reads the JWT's exp; leadtap is told an hour
    try:
        app = app_for(tmp_path, oauth2_section(user, client_credentials(auth, client)))
        user.append(enquiry())
        [report] = app.ingest_mailboxes()
        assert not report.failed, report.error
        wait_until = time.time() + 3  # past the JWT's exp, which Dovecot reads to the second
        while time.time() < wait_until:
            time.sleep(0.1)
        user.append(enquiry(email="later@acme.test"))
        [report] = app.ingest_mailboxes()
        assert not report.failed, report.error
        assert leads(app) == 2 and auth.count("client_credentials") == 2
    finally:
        auth.lifetime, auth.said_lifetime = 3600.0, None


def service_account_table(tmp_path, auth_server) -> dict:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = f"leadtap-{uuid.uuid4().hex[:6]}@project.iam.gserviceaccount.com"
    auth_server.service_accounts[email] = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    (tmp_path / "sa.json").write_text(json.dumps({"client_email": email, "private_key": private}))
    return {"provider": "generic", "grant": "service_account", "token_url": auth_server.token_url,
            "scope": "imap", "key_file": "sa.json"}


@pytest.mark.parametrize("grant", ["refresh_token", "service_account"])
def test_run_pushes_with_each_grant(tmp_path, auth_server, user, grant):
    """`leadtap run` in IDLE with a person's grant (signed in by `auth login`) and with a service
    account: new mail becomes leads as it comes (client credentials: the expiry test above)."""
    from tests.test_daemon import count, start_run, wait_for

    if grant == "refresh_token":
        client = f"app-{uuid.uuid4().hex[:6]}"
        auth_server.add_client(client, None)
        auth_server.authorize_as = user.user
        table = {"provider": "generic", "grant": "refresh_token", "token_url": auth_server.token_url,
                 "scope": "imap", "client_id": client, "device_url": f"{auth_server.url}/devicecode"}
    else:
        table = service_account_table(tmp_path, auth_server)
    config = cli_config(tmp_path, oauth2_section(user, table, poll_interval="1h"))
    if grant == "refresh_token":
        assert run_leadtap("auth", "login", "--mailbox", "sales", config=config).returncode == 0
    process = start_run(config)
    url = f"sqlite:///{tmp_path / 'leadtap.db'}"
    try:
        for n in range(3):
            user.append(enquiry(email=f"push{n}@acme.test"))
            wait_for(lambda: count(url, "select count(*) from leads") == n + 1, timeout=20, what=f"lead {n + 1}")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert "idle_started" in err and "pass_failed" not in err and "idle_lost" not in err, err[-2000:]


# --- what a second review found: each one proved fixed ------------------------------------------------------------


def person_table(auth_server, client: str) -> dict:
    return {"provider": "generic", "grant": "refresh_token", "token_url": auth_server.token_url, "scope": "imap",
            "client_id": client}


@pytest.mark.postgres
def test_a_sign_in_between_a_workers_read_and_its_claim_is_not_refreshed_with_the_old_grant(
        tmp_path, auth_server, user, postgres_url):
    from leadtap.auth.cipher import TokenCipher
    from leadtap.auth.tokens import TokenSource

    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, None)
    app = app_for(tmp_path, oauth2_section(user, person_table(auth_server, client)), url=postgres_url)
    sign_in = refresh_sign_in(app, auth_server, client, user.user)
    auth_server.refresh.clear()  # the old grant was revoked: that is why the person signs in again

    class Interrupted(TokenSource):
        def refresh_token_of(self, sign_in_, row):
            read = super().refresh_token_of(sign_in_, row)  # the old refresh token
            if not getattr(self, "interrupted", False):
                self.interrupted = True
                refresh_sign_in(app, auth_server, client, user.user)  # `auth login` right now
            return read

    worker = Interrupted(Database(postgres_url), lambda: TokenCipher(KEY), "worker-1")
    assert worker.access_token(sign_in)  # the new grant's token, refreshed once
    row = token_row(app)
    assert not row["attention"] and row["error"] is None and auth_server.count("refresh_token") == 1


@pytest.mark.postgres
def test_a_sign_in_during_a_refused_refresh_ends_the_workers_wait(tmp_path, auth_server, user, postgres_url):
    from leadtap.auth.cipher import TokenCipher
    from leadtap.auth.endpoint import TokenEndpoint
    from leadtap.auth.tokens import TokenSource

    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, None)
    app = app_for(tmp_path, oauth2_section(user, person_table(auth_server, client)), url=postgres_url)
    sign_in = refresh_sign_in(app, auth_server, client, user.user)
    auth_server.refresh.clear()

    class SignedInMeanwhile(TokenEndpoint):
        def fetch(self, refresh_token):
            if not auth_server.refresh:
                refresh_sign_in(app, auth_server, client, user.user)  # `auth login` while the request is out
            return super().fetch(refresh_token)

    worker = TokenSource(Database(postgres_url), lambda: TokenCipher(KEY), "worker-1", endpoint=SignedInMeanwhile)
    with pytest.raises(OAuth2Error):
        worker.access_token(sign_in)  # the old grant: refused
    assert not token_row(app)["attention"]  # the new sign-in is not marked by the old grant's refusal
    assert worker.access_token(sign_in)  # at once, with the new grant: no ten-minute wait


def test_idle_keeps_its_sessions_when_the_database_clock_is_behind(tmp_path, auth_server, user, monkeypatch):
    import leadtap.auth.tokens as tokens

    auth_server.lifetime = 20.0  # renewed 5 s early
    monkeypatch.setattr(tokens, "database_now", lambda session, clock: clock() - timedelta(seconds=8))
    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})
    app = app_for(tmp_path, oauth2_section(user, client_credentials(auth_server, client)))
    sessions, stop_at = [], time.monotonic() + 8
    app.watch_mailbox("sales", lambda: sessions.append(1), should_stop=lambda: time.monotonic() > stop_at,
                      may_watch=lambda: True, wait=time.sleep, on_state=lambda _: None)
    assert len(sessions) <= 2 and auth_server.count("client_credentials") == 1


def test_a_reminder_goes_out_through_smtp_signed_in_with_a_token(tmp_path, auth_server, user):
    """The reminder sweep's mail, as the new-lead email's, leaves over SMTP signed in with a token."""
    from datetime import datetime, timezone

    def introspect(token: str) -> str | None:
        issued = auth_server.access.get(token)
        return issued.username if issued and issued.expires > time.time() else None

    client, sender = f"app-{uuid.uuid4().hex[:6]}", f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})
    auth_server.add_client(sender, SECRET, mailboxes={"crm@example.com"})
    with SmtpServer(OAuthRecorder(introspect)) as smtp:
        extra = ('[reminders]\n[[reminders.rules]]\nname = "new-untouched"\nstatus = "New"\nafter = "2d"\n'
                 f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "plain"\nusername = "crm@example.com"\n'
                 f'from = "leadtap <crm@example.com>"\nauth = "oauth2"\n[smtp.oauth2]\n'
                 + "".join(f"{k} = {toml_value(v)}\n" for k, v in client_credentials(auth_server, sender).items()))
        app = app_for(tmp_path, oauth2_section(user, client_credentials(auth_server, client)), extra=extra)
        user.append(enquiry())
        app.ingest_mailboxes()
        later = datetime.now(timezone.utc) + timedelta(days=3)
        report = app.reminder_sweep(clock=lambda: later).run()
        assert report.sent == 1, report
        assert smtp.handler.signed_in == ["crm@example.com"] and "Jo Smith" in smtp.messages[0]["Subject"]


def test_a_pass_cut_by_its_tokens_expiry_goes_on_with_a_fresh_one(tmp_path, auth_server, user):
    """Exchange ends a session mid-pass when its token runs out: the pass takes a fresh token and goes
    on, every message a lead once, and says it as a reconnect (not `pass_failed`)."""
    from tests.imap_proxy import ExchangeLikeProxy

    client = f"app-{uuid.uuid4().hex[:6]}"
    auth_server.add_client(client, SECRET, mailboxes={user.user})
    with ExchangeLikeProxy(user.server.port, lambda token: None) as proxy:
        app = app_for(tmp_path, oauth2_section(user, client_credentials(auth_server, client), port=proxy.port))
        for n in range(3):
            user.append(enquiry(email=f"cut{n}@acme.test"))
        proxy.expire_at_fetch = 1
        stream = io.StringIO()
        configure_logging("info", stream=stream)
        [report] = app.ingest_mailboxes()
    assert not report.failed, report.error
    assert leads(app) == 3 and proxy.cut == 1 and auth_server.count("client_credentials") == 2
    assert "pass_token_expired" in stream.getvalue() and "pass_failed" not in stream.getvalue()
