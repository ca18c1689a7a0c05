"""``auth = "oauth2"`` on a mailbox and on SMTP: the presets fill in what
Microsoft and Google publish, each grant asks for what it needs, secrets are
read when needed, and every mistake is refused at load naming its key."""

from __future__ import annotations

import pytest

from tests.test_config import assert_names, config, load, refused

KEY = '[oauth2]\ntoken_key_file = "token.key"\n'
MICROSOFT_APP = """[[mailboxes]]
name = "sales"
username = "sales@contoso.com"
auth = "oauth2"
[mailboxes.oauth2]
provider = "microsoft"
grant = "client_credentials"
tenant = "contoso.onmicrosoft.com"
client_id = "11111111-2222-3333-4444-555555555555"
client_secret_file = "sales-oauth"
"""


def oauth2_box(table: str, username: str = "sales@contoso.com", extra: str = "") -> str:
    return (f'[[mailboxes]]\nname = "sales"\nusername = "{username}"\nauth = "oauth2"\n{extra}'
            f"[mailboxes.oauth2]\n{table}")


def with_box(box: str, extra: str = KEY) -> str:
    return config(mailboxes=(box,), extra=extra)


def test_a_microsoft_app_needs_only_the_issue_lines(tmp_path):
    (tmp_path / "sales-oauth").write_text("the-client-secret\n")
    loaded = load(tmp_path, with_box(MICROSOFT_APP))
    box = loaded.mailboxes[0]
    assert (box.host, box.port, box.security, box.auth, box.password) == (
        "outlook.office365.com", 993, "tls", "oauth2", None)
    oauth2 = box.oauth2
    assert oauth2.token_url == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert oauth2.scope == "https://outlook.office365.com/.default"
    assert (oauth2.mechanism, oauth2.interactive) == ("xoauth2", False)
    assert oauth2.client_secret.reveal() == "the-client-secret"
    assert "the-client-secret" not in repr(loaded)


def test_delegated_microsoft_and_google_scopes_and_hosts(tmp_path):
    delegated = load(tmp_path, with_box(oauth2_box('provider = "microsoft"\ngrant = "refresh_token"\n'
                                                   'client_id = "app"\n'))).mailboxes[0].oauth2
    assert delegated.scope == "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
    assert delegated.tenant == "organizations" and delegated.device_url.endswith("/organizations/oauth2/v2.0/devicecode")
    assert delegated.client_secret is None and delegated.interactive  # a public client: device-code sign-in
    (tmp_path / "sa.json").write_text("{}")
    google = load(tmp_path, with_box(oauth2_box('provider = "google"\ngrant = "service_account"\n'
                                                'key_file = "sa.json"\n', username="sales@example.com")))
    box = google.mailboxes[0]
    assert (box.host, box.oauth2.scope, box.oauth2.token_url) == (
        "imap.gmail.com", "https://mail.google.com/", "https://oauth2.googleapis.com/token")
    assert box.oauth2.key_file == "sa.json" and box.oauth2.key.reveal() == "{}"  # read from beside the config


def test_smtp_takes_the_same_table(tmp_path):
    (tmp_path / "smtp-oauth").write_text("s3cret")
    smtp = ('[smtp]\nfrom = "leadtap <crm@contoso.com>"\nusername = "crm@contoso.com"\nauth = "oauth2"\n'
            '[smtp.oauth2]\nprovider = "microsoft"\ngrant = "refresh_token"\ntenant = "contoso.com"\n'
            'client_id = "app"\nclient_secret_file = "smtp-oauth"\n')
    loaded = load(tmp_path, config(extra=smtp + KEY))
    assert (loaded.smtp.host, loaded.smtp.port, loaded.smtp.security) == ("smtp.office365.com", 587, "starttls")
    assert loaded.smtp.oauth2.scope == "https://outlook.office.com/SMTP.Send offline_access"
    assert loaded.smtp.password is None


def test_a_generic_server_names_its_endpoint_and_scope(tmp_path):
    box = oauth2_box('provider = "generic"\ngrant = "client_credentials"\ntoken_url = "http://127.0.0.1:9/token"\n'
                     'scope = "imap"\nclient_id = "leadtap"\nclient_secret_env = "SECRET"\nmechanism = "oauthbearer"\n'
                     'timeout = "3s"\n', extra='host = "127.0.0.1"\n')
    oauth2 = load(tmp_path, with_box(box), environ={"SECRET": "x"}).mailboxes[0].oauth2
    assert (oauth2.token_url, oauth2.scope, oauth2.mechanism, oauth2.timeout) == (
        "http://127.0.0.1:9/token", "imap", "oauthbearer", 3.0)
    assert oauth2.client_secret.reveal() == "x"


def test_the_credential_is_shared_by_the_same_sign_in_only(tmp_path):
    table = 'provider = "microsoft"\ngrant = "refresh_token"\nclient_id = "app"\n'
    inbox = load(tmp_path, with_box(oauth2_box(table))).mailboxes[0]
    sent = load(tmp_path, with_box(oauth2_box(table, username="SALES@contoso.com"))).mailboxes[0]
    other = load(tmp_path, with_box(oauth2_box(table, username="support@contoso.com"))).mailboxes[0]
    assert inbox.oauth2.credential(inbox.username) == sent.oauth2.credential(sent.username)
    assert inbox.oauth2.credential(inbox.username) != other.oauth2.credential(other.username)
    changed = load(tmp_path, with_box(oauth2_box(table.replace('"app"', '"app2"')))).mailboxes[0]
    assert changed.oauth2.credential(changed.username) != inbox.oauth2.credential(inbox.username)


@pytest.mark.parametrize("table, key, words", [
    ('provider = "yahoo"\ngrant = "refresh_token"\nclient_id = "a"\n', "mailboxes[0].oauth2.provider",
     "not one of ['microsoft', 'google', 'generic']"),
    ('provider = "microsoft"\ngrant = "password"\nclient_id = "a"\n', "mailboxes[0].oauth2.grant", "not one of"),
    ('provider = "microsoft"\ngrant = "service_account"\nkey_file = "k"\n', "mailboxes[0].oauth2.grant",
     "Microsoft has no service accounts"),
    ('provider = "google"\ngrant = "client_credentials"\nclient_id = "a"\nclient_secret_env = "S"\n',
     "mailboxes[0].oauth2.grant", "service_account"),
    ('provider = "microsoft"\ngrant = "client_credentials"\nclient_id = "a"\nclient_secret_env = "S"\n',
     "mailboxes[0].oauth2.tenant", "tenant is required"),
    ('provider = "microsoft"\ngrant = "client_credentials"\ntenant = "t.com"\nclient_id = "a"\n',
     "mailboxes[0].oauth2.client_secret_file", "needs the client's secret"),
    ('provider = "microsoft"\ngrant = "refresh_token"\n', "mailboxes[0].oauth2.client_id", "required"),
    ('provider = "google"\ngrant = "service_account"\n', "mailboxes[0].oauth2.key_file", "key_file is required"),
    ('provider = "google"\ngrant = "service_account"\nkey_file = "k"\nclient_secret_env = "S"\n',
     "mailboxes[0].oauth2.client_secret_env", "not a client secret"),
    ('provider = "generic"\ngrant = "refresh_token"\nclient_id = "a"\nscope = "s"\n',
     "mailboxes[0].oauth2.token_url", "token_url"),
    ('provider = "generic"\ngrant = "refresh_token"\nclient_id = "a"\ntoken_url = "http://auth.example.com/t"\n'
     'scope = "s"\n', "mailboxes[0].oauth2.token_url", "not an https:// URL"),
    ('provider = "google"\ngrant = "refresh_token"\nclient_id = "a"\ntenant = "x"\n', "mailboxes[0].oauth2.tenant",
     "only provider"),
    ('provider = "microsoft"\ngrant = "refresh_token"\nclient_id = "a"\ntenant = "a b"\n',
     "mailboxes[0].oauth2.tenant", "not a tenant"),
    ('provider = "microsoft"\ngrant = "refresh_token"\nclient_id = "a"\nmechanism = "plain"\n',
     "mailboxes[0].oauth2.mechanism", "not one of"),
    ('provider = "microsoft"\ngrant = "refresh_token"\nclient_id = "a"\nclient_secret_env = "A"\n'
     'client_secret_file = "b"\n', "mailboxes[0].oauth2.client_secret_file", "exactly one"),
    ('provider = "microsoft"\ngrant = "client_credentials"\ntenant = "common"\nclient_id = "a"\n'
     'client_secret_env = "S"\n', "mailboxes[0].oauth2.tenant", "one tenant, not 'common'"),
    ('provider = "microsoft"\ngrant = "refresh_token"\nclient_id = "a"\nmechanism = "oauthbearer"\n',
     "mailboxes[0].oauth2.mechanism", "XOAUTH2 only"),
    ('provider = "microsoft"\ngrant = "refresh_token"\nclient_id = "a"\ntimeout = "5m"\n',
     "mailboxes[0].oauth2.timeout", "up to 30s"),
    ('provider = "microsoft"\ngrant = "refresh_token"\nclient_id = "a"\nclient_scret = "b"\n',
     "mailboxes[0].oauth2.client_scret", "client_secret"),
])
def test_each_mistake_is_refused_naming_its_key(tmp_path, table, key, words):
    assert_names(refused(tmp_path, with_box(oauth2_box(table))), key, words)


def test_auth_and_its_table_must_agree(tmp_path):
    table = '[mailboxes.oauth2]\nprovider = "microsoft"\ngrant = "refresh_token"\nclient_id = "a"\n'
    password_box = ('[[mailboxes]]\nname = "sales"\nhost = "imap.example.com"\nusername = "sales"\n'
                    'password_env = "SALES_PW"\n')
    assert_names(refused(tmp_path, with_box(password_box + table)), "mailboxes[0].oauth2", 'add auth = "oauth2"')
    assert_names(refused(tmp_path, with_box(password_box.replace('username', 'auth = "oauth2"\nusername') + table)),
                 "mailboxes[0].password_env", "not a password")
    assert_names(refused(tmp_path, with_box(password_box.replace("username", 'auth = "kerberos"\nusername'))),
                 "mailboxes[0].auth", "not one of ['password', 'oauth2']")
    generic = oauth2_box('provider = "generic"\ngrant = "refresh_token"\nclient_id = "a"\n'
                         'token_url = "https://a.example.com/t"\nscope = "s"\n')
    assert_names(refused(tmp_path, with_box(generic)), "mailboxes[0].host", "required")


def test_tokens_need_a_key_given_as_a_file_or_a_variable(tmp_path):
    box = oauth2_box('provider = "microsoft"\ngrant = "refresh_token"\nclient_id = "a"\n')
    assert_names(refused(tmp_path, with_box(box, extra="")), "oauth2.token_key_file", "openssl rand")
    assert_names(refused(tmp_path, with_box(box, extra='[oauth2]\ntoken_key = "inline"\n')), "oauth2.token_key",
                 "unknown key")
    both = '[oauth2]\ntoken_key_file = "a"\ntoken_key_env = "B"\n'
    assert_names(refused(tmp_path, with_box(box, extra=both)), "oauth2.token_key_env", "not both")
    (tmp_path / "token.key").write_text("k" * 44 + "\n")
    loaded = load(tmp_path, with_box(box))
    assert loaded.oauth2.key.reveal() == "k" * 44
    assert load(tmp_path, config()).oauth2.key is None  # no OAuth2, no key needed


def test_a_token_key_too_short_is_refused_when_read(tmp_path):
    from leadtap.core.errors import ConfigError

    box = oauth2_box('provider = "microsoft"\ngrant = "refresh_token"\nclient_id = "a"\n')
    (tmp_path / "token.key").write_text("short\n")
    loaded = load(tmp_path, with_box(box))
    with pytest.raises(ConfigError) as caught:
        loaded.read_secrets()  # as `run` does at start
    assert_names(caught.value, "oauth2.token_key_file", "5 characters; at least 32")
