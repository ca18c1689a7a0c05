"""The configuration file: what a valid one loads into, and how every kind of
mistake is refused at start with one message naming the file, the key and
what is expected (never a traceback, never the password)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from leadtap.core.config.load import DEFAULT_CLOSED, DEFAULT_SOURCES, DEFAULT_STATUSES, Config, Secret, load_config
from leadtap.core.errors import ConfigError
from leadtap import bootstrap
from leadtap.cli import main

PASSWORD = "Zq9xK-unmistakable-Pw-4471"
ENV = {"SALES_PW": PASSWORD}

CONTACT_BODY = "Name: {{ name }}\nEmail: {{ email }}\nMessage: {{ message | multiline }}\n"


# --- building TOML text by hand ------------------------------------------------


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def table(header: str, values: dict) -> str:
    """One TOML table; a value of None leaves the key out; a str value starting
    with '=' is written raw (for things like ``inf`` or bad types)."""
    lines = [header]
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, str) and value.startswith("="):
            lines.append(f"{key} {value}")
        else:
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def mailbox(**overrides) -> str:
    values = {
        "name": "sales",
        "host": "imap.example.com",
        "username": "sales@example.com",
        "password_env": "SALES_PW",
        "templates": ["contact-form"],
    }
    values.update(overrides)
    return table("[[mailboxes]]", values)


def template(**overrides) -> str:
    values = {"name": "contact-form", "from": "*@forms.example.com", "subject": "New enquiry*", "body": CONTACT_BODY}
    values.update(overrides)
    return table("[[extraction_templates]]", values)


def owner(**overrides) -> str:
    values = {"email": "ana@example.com", "name": "Ana", "roles": ["sales"]}
    values.update(overrides)
    return table("[[owners]]", values)


LEADS = {
    "statuses": ["New", "Attempting", "Contacted", "Qualified", "Disqualified"],
    "closed_statuses": ["Qualified", "Disqualified"],
    "default_status": "New",
    "sources": ["Email", "Website", "Partner"],
    "default_source": "Email",
}
INGEST = {"batch_size": 50, "max_message_size": "25MB", "max_attempts": 5, "timeout": "1h30m"}


def config(
    *,
    leads: dict | None = None,
    ingest: dict | None = None,
    owners: tuple[str, ...] = (owner(),),
    templates: tuple[str, ...] = (template(),),
    mailboxes: tuple[str, ...] = (mailbox(),),
    extra: str = "",
) -> str:
    """The valid base config, with any part swapped out."""
    return "\n".join(
        [
            table("[database]", {"url": "sqlite:///crm.db"}),
            table("[leads]", {**LEADS, **(leads or {})}),
            table("[assignment]", {"enabled": False, "role": "closer"}),
            table("[opportunities]", {"auto_create": False, "stages": ["Open", "Won", "Lost"]}),
            table("[ingest]", {**INGEST, **(ingest or {})}),
            *owners,
            *templates,
            *mailboxes,
            extra,
        ]
    )


def write(tmp_path: Path, text: str, name: str = "leadtap.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, environ=ENV) -> Config:
    return load_config(write(tmp_path, text), environ)


def refused(tmp_path: Path, text: str, environ=ENV) -> ConfigError:
    """The ConfigError a config is refused with; its message names the file."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ)
    error = caught.value
    assert error.path == path
    assert str(path) in str(error)
    assert "\n" not in str(error).strip()
    return error


def assert_names(error: ConfigError, key: str, *expected: str) -> None:
    assert error.key == key
    assert f": {key}: " in str(error)
    for word in expected:
        assert word.lower() in str(error).lower(), f"{word!r} not in {str(error)!r}"


# --- a valid config ---------------------------------------------------------------


def test_a_full_valid_config_loads_into_typed_values(tmp_path):
    two_owners = (owner(), owner(email="ben@example.com", name="Ben", roles=["sales", "lead"], active=False))
    boxes = (
        mailbox(),
        mailbox(
            name="support",
            host="127.0.0.1",
            port=1143,
            security="plain",
            username="support",
            password_env=None,
            password="literal-but-warned",
            folder="Leads",
            active=False,
            unread_only=False,
            source="Partner",
            poll_interval="15m",
            ca_file="/etc/ssl/ca.pem",
        ),
    )
    path = write(tmp_path, config(owners=two_owners, mailboxes=boxes))

    cfg = load_config(path, ENV)

    assert cfg.path == path
    assert cfg.database.url == f"sqlite:///{tmp_path}/crm.db"  # beside the config file
    assert cfg.leads.statuses == ("New", "Attempting", "Contacted", "Qualified", "Disqualified")
    assert cfg.leads.closed_statuses == ("Qualified", "Disqualified")
    assert cfg.leads.default_status == "New"
    assert cfg.leads.sources == ("Email", "Website", "Partner")
    assert cfg.assignment.enabled is False and cfg.assignment.role == "closer"
    assert cfg.opportunities.auto_create is False and cfg.opportunities.stages == ("Open", "Won", "Lost")
    assert cfg.ingest.batch_size == 50
    assert cfg.ingest.max_message_size == 25_000_000
    assert cfg.ingest.max_attempts == 5
    assert cfg.ingest.timeout == 5400.0

    ana, ben = cfg.owners
    assert (ana.email, ana.name, ana.roles, ana.active) == ("ana@example.com", "Ana", ("sales",), True)
    assert (ben.email, ben.name, ben.roles, ben.active) == ("ben@example.com", "Ben", ("sales", "lead"), False)

    tpl = cfg.template("contact-form")
    assert tpl.body == CONTACT_BODY
    assert tpl.from_glob == "*@forms.example.com" and tpl.subject_glob == "New enquiry*"

    sales, support = cfg.mailboxes
    assert sales.name == "sales" and sales.host == "imap.example.com" and sales.username == "sales@example.com"
    assert sales.password.reveal() == PASSWORD and sales.password == Secret(PASSWORD)  # read, then equal
    assert sales.templates == ("contact-form",)
    assert cfg.mailbox("support") is support
    assert (support.port, support.security, support.folder) == (1143, "plain", "Leads")
    assert (support.active, support.unread_only, support.source) == (False, False, "Partner")
    assert support.poll_interval == timedelta(minutes=15)
    assert support.ca_file == "/etc/ssl/ca.pem"
    assert support.password.reveal() == "literal-but-warned"
    assert cfg.pipeline.is_open("Contacted") and not cfg.pipeline.is_open("Qualified")


def test_the_loaded_config_is_frozen(tmp_path):
    cfg = load(tmp_path, config())
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.path = Path("elsewhere.toml")  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.mailboxes[0].host = "evil.example.com"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.leads.default_status = "Qualified"  # type: ignore[misc]


def test_an_empty_file_gives_the_documented_defaults(tmp_path):
    cfg = load(tmp_path, "", environ={})
    assert cfg.database.url == f"sqlite:///{tmp_path}/leadtap.db"
    assert cfg.leads.statuses == DEFAULT_STATUSES
    assert cfg.leads.closed_statuses == DEFAULT_CLOSED
    assert cfg.leads.sources == DEFAULT_SOURCES
    assert (cfg.leads.default_status, cfg.leads.default_source) == ("New", "Email")
    assert cfg.assignment.enabled is True and cfg.assignment.role == "sales"
    assert cfg.ingest.batch_size == 100
    assert cfg.ingest.max_message_size == 25 * 1024 * 1024
    assert cfg.ingest.max_attempts == 3
    assert cfg.ingest.timeout == 30.0
    assert cfg.owners == () and cfg.mailboxes == () and cfg.templates == () and cfg.warnings == ()


def test_a_mailbox_takes_its_defaults_when_keys_are_left_out(tmp_path):
    box = load(tmp_path, config(mailboxes=(mailbox(templates=None),))).mailboxes[0]
    assert box.security == "tls" and box.port == 993
    assert box.folder == "INBOX"
    assert box.active is True and box.unread_only is True
    assert box.poll_interval == timedelta(seconds=60)
    assert box.templates == ()
    assert box.ca_file is None


def test_a_sent_folder_is_read_by_uid_and_an_inbox_is_the_default(tmp_path):
    inbox, sent = load(tmp_path, config(mailboxes=(mailbox(), mailbox(name="sent", kind="sent", folder="Sent",
                                                                         templates=None)))).mailboxes
    assert (inbox.kind, inbox.is_sent, inbox.unread_only) == ("inbox", False, True)
    assert (sent.kind, sent.is_sent, sent.unread_only) == ("sent", True, False)


@pytest.mark.parametrize("overrides, key, words", [
    ({"kind": "outbox"}, "kind", ["'outbox'", "inbox", "sent"]),
    ({"kind": "sent", "unread_only": True, "templates": None}, "unread_only", ["by UID"]),
    ({"kind": "sent"}, "templates", ["no leads"]),
])
def test_a_wrong_mailbox_kind_is_refused(tmp_path, overrides, key, words):
    error = refused(tmp_path, config(mailboxes=(mailbox(**overrides),)))
    assert_names(error, f"mailboxes[0].{key}", *words)


def test_a_mailbox_source_defaults_to_the_leads_default_source(tmp_path):
    cfg = load(tmp_path, config(leads={"default_source": "Website"}))
    assert cfg.leads.default_source == "Website"
    assert cfg.mailboxes[0].source == "Website"


def test_an_owner_name_defaults_to_the_email(tmp_path):
    cfg = load(tmp_path, config(owners=(owner(name=None, roles=None),)))
    assert cfg.owners[0].name == "ana@example.com"
    assert cfg.owners[0].roles == ()


@pytest.mark.parametrize(
    ("security", "host", "port"),
    [("tls", "imap.example.com", 993), ("starttls", "imap.example.com", 143), ("plain", "localhost", 143)],
)
def test_the_port_defaults_by_security_mode(tmp_path, security, host, port):
    box = load(tmp_path, config(mailboxes=(mailbox(security=security, host=host),))).mailboxes[0]
    assert box.port == port


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.53", "::1"])
def test_plain_security_is_allowed_to_a_loopback_host(tmp_path, host):
    box = load(tmp_path, config(mailboxes=(mailbox(security="plain", host=host),))).mailboxes[0]
    assert box.security == "plain"


@pytest.mark.parametrize(
    ("written", "seconds"),
    [("60s", 60), ("15m", 900), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), ("1h 30m", 5400), ("500ms", 0.5),
     (45, 45)],
)
def test_durations_are_read_with_units(tmp_path, written, seconds):
    box = load(tmp_path, config(mailboxes=(mailbox(poll_interval=written),))).mailboxes[0]
    assert box.poll_interval == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("written", "size"),
    [("25MB", 25_000_000), ("512KiB", 524_288), ("1GiB", 1024**3), ("25 mb", 25_000_000), ("300B", 300),
     ("1000", 1000), (4096, 4096)],
)
def test_sizes_are_read_with_units(tmp_path, written, size):
    assert load(tmp_path, config(ingest={"max_message_size": written})).ingest.max_message_size == size


# --- passwords --------------------------------------------------------------------


def test_password_env_reads_the_named_environment_variable(tmp_path):
    cfg = load(tmp_path, config(), environ={"SALES_PW": PASSWORD})
    assert cfg.mailboxes[0].password.reveal() == PASSWORD
    assert cfg.warnings == ()


def test_password_file_is_read_with_credentials_directory_expansion(tmp_path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "sales-imap").write_text(PASSWORD + "\n", encoding="utf-8")
    text = config(mailboxes=(mailbox(password_env=None, password_file="${CREDENTIALS_DIRECTORY}/sales-imap"),))

    cfg = load(tmp_path, text, environ={"CREDENTIALS_DIRECTORY": str(creds)})

    assert cfg.mailboxes[0].password.reveal() == PASSWORD  # the trailing newline is not part of it
    assert cfg.warnings == ()


def test_a_literal_password_is_accepted_with_a_warning_naming_file_and_key(tmp_path):
    text = config(mailboxes=(mailbox(), mailbox(name="support", password_env=None, password=PASSWORD)))
    path = write(tmp_path, text)

    cfg = load_config(path, ENV)

    assert cfg.mailbox("support").password.reveal() == PASSWORD
    assert len(cfg.warnings) == 1
    assert str(path) in cfg.warnings[0]
    assert "mailboxes[1].password" in cfg.warnings[0]
    assert "password_env" in cfg.warnings[0]


def refused_secret(tmp_path: Path, text: str, environ=ENV, box: int = 0) -> ConfigError:
    """A config whose secret cannot be read loads; reading the secret is refused, naming file and key."""
    path = write(tmp_path, text)
    config = load_config(path, environ)
    with pytest.raises(ConfigError) as caught:
        config.mailboxes[box].password.reveal()
    assert str(path) in str(caught.value) and "\n" not in str(caught.value).strip()
    return caught.value


def test_a_missing_password_environment_variable_is_refused_naming_it(tmp_path):
    text = config(mailboxes=(mailbox(), mailbox(name="support", password_env="SUPPORT_PW")))
    error = refused_secret(tmp_path, text, box=1)
    assert_names(error, "mailboxes[1].password_env", "SUPPORT_PW", "not set")


def test_two_kinds_of_password_are_refused(tmp_path):
    error = refused(tmp_path, config(mailboxes=(mailbox(password="also-given"),)))
    assert_names(error, "mailboxes[0].password_env", "exactly one of")


def test_a_mailbox_without_any_password_is_refused(tmp_path):
    error = refused(tmp_path, config(mailboxes=(mailbox(password_env=None),)))
    assert_names(error, "mailboxes[0].password_env", "exactly one of", "password_file")


def test_an_unreadable_password_file_is_refused_naming_the_file(tmp_path):
    missing = tmp_path / "no-such-secret"
    error = refused_secret(tmp_path, config(mailboxes=(mailbox(password_env=None, password_file=str(missing)),)))
    assert_names(error, "mailboxes[0].password_file", "cannot read", str(missing))


def test_a_password_file_naming_an_unset_variable_is_refused(tmp_path):
    text = config(mailboxes=(mailbox(password_env=None, password_file="${CREDENTIALS_DIRECTORY}/sales-imap"),))
    error = refused_secret(tmp_path, text, environ={})
    assert_names(error, "mailboxes[0].password_file", "CREDENTIALS_DIRECTORY", "not set")


def test_a_password_file_that_is_not_utf8_is_refused_not_a_traceback(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\xff\xfe\x00\x81binary")
    error = refused_secret(tmp_path, config(mailboxes=(mailbox(password_env=None, password_file=str(secret)),)))
    assert_names(error, "mailboxes[0].password_file")


# --- the password never shows -------------------------------------------------------


def test_the_password_never_appears_in_the_repr_or_the_warnings(tmp_path):
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD, encoding="utf-8")
    boxes = (
        mailbox(),
        mailbox(name="b", password_env=None, password_file=str(secret)),
        mailbox(name="c", password_env=None, password=PASSWORD),
    )
    cfg = load(tmp_path, config(mailboxes=boxes))
    assert [b.password.reveal() for b in cfg.mailboxes] == [PASSWORD] * 3
    assert PASSWORD not in repr(cfg)
    assert PASSWORD not in str(cfg)
    assert all(PASSWORD not in repr(box) for box in cfg.mailboxes)
    assert PASSWORD not in repr(cfg.mailboxes[0].password)
    assert cfg.warnings and all(PASSWORD not in warning for warning in cfg.warnings)


@pytest.mark.parametrize(
    "bad_box",
    [
        mailbox(password_env=None, password=PASSWORD, security="plain"),  # plain to a remote host
        mailbox(password_env=None, password=PASSWORD, hots="x"),  # unknown key
        mailbox(password_env=None, password=PASSWORD, source="Fax"),  # unknown source
        mailbox(password_env="SALES_PW", password=PASSWORD),  # two kinds of password
        mailbox(password_env=None, password=PASSWORD, port=70000),  # port out of range
    ],
    ids=["plain-remote", "unknown-key", "unknown-source", "two-passwords", "bad-port"],
)
def test_the_password_never_appears_in_a_config_error(tmp_path, bad_box):
    error = refused(tmp_path, config(mailboxes=(bad_box,)))
    assert PASSWORD not in str(error)
    assert PASSWORD not in repr(error)


def test_a_password_of_the_wrong_type_is_not_echoed_in_the_error(tmp_path):
    error = refused(tmp_path, config(mailboxes=(mailbox(password_env=None, password="= 20240917"),)))
    assert_names(error, "mailboxes[0].password", "string")
    assert "20240917" not in str(error)


# --- mistakes, each refused naming file, key and what is expected ------------------------


def test_an_unknown_top_level_table_is_refused_naming_it(tmp_path):
    error = refused(tmp_path, config(extra='[databse]\nurl = "sqlite://"\n'))
    assert_names(error, "databse", "unknown key")


def test_an_unknown_key_in_a_table_is_refused_naming_it(tmp_path):
    error = refused(tmp_path, config(ingest={"batchsize": 10}))
    assert_names(error, "ingest.batchsize", "unknown key")


def test_an_unknown_key_in_an_array_table_is_refused_naming_it(tmp_path):
    error = refused(tmp_path, config(mailboxes=(mailbox(), mailbox(name="support", hots="x"))))
    assert_names(error, "mailboxes[1].hots", "unknown key")


def test_an_array_of_tables_written_as_a_single_table_is_refused(tmp_path):
    text = config(mailboxes=()) + '\n[mailboxes]\nname = "sales"\n'
    error = refused(tmp_path, text)
    assert_names(error, "mailboxes", "array of tables", "[[mailboxes]]")


@pytest.mark.parametrize(
    ("text_of", "key", "expected"),
    [
        (lambda: config(ingest={"batch_size": "100"}), "ingest.batch_size", "whole number"),
        (lambda: config(mailboxes=(mailbox(port=True),)), "mailboxes[0].port", "whole number"),
        (lambda: config(mailboxes=(mailbox(port=993.0),)), "mailboxes[0].port", "whole number"),
        (lambda: config(mailboxes=(mailbox(active=1),)), "mailboxes[0].active", "boolean"),
        (lambda: config(leads={"statuses": "New"}), "leads.statuses", "list of strings"),
        (lambda: config(mailboxes=(mailbox(templates=["contact-form", 3]),)), "mailboxes[0].templates",
         "list of strings"),
        (lambda: config(owners=(owner(email=7),)), "owners[0].email", "string"),
    ],
    ids=["string-for-int", "bool-for-int", "float-for-int", "int-for-bool", "string-for-list", "int-in-list",
         "int-for-string"],
)
def test_a_value_of_the_wrong_type_is_refused_saying_what_type_is_expected(tmp_path, text_of, key, expected):
    assert_names(refused(tmp_path, text_of()), key, expected)


def test_an_empty_string_is_refused(tmp_path):
    assert_names(refused(tmp_path, config(mailboxes=(mailbox(host="  "),))), "mailboxes[0].host", "empty")


@pytest.mark.parametrize(
    ("text_of", "key"),
    [
        (lambda: config(mailboxes=(mailbox(name=None),)), "mailboxes[0].name"),
        (lambda: config(mailboxes=(mailbox(), mailbox(name="b", host=None))), "mailboxes[1].host"),
        (lambda: config(mailboxes=(mailbox(username=None),)), "mailboxes[0].username"),
        (lambda: config(templates=(template(name=None),), mailboxes=()), "extraction_templates[0].name"),
        (lambda: config(templates=(template(), template(name="other", body=None))), "extraction_templates[1].body"),
        (lambda: config(owners=(owner(), owner(email=None))), "owners[1].email"),
    ],
    ids=["mailbox-name", "mailbox-host", "mailbox-username", "template-name", "template-body", "owner-email"],
)
def test_a_missing_required_key_is_refused_naming_it(tmp_path, text_of, key):
    assert_names(refused(tmp_path, text_of()), key, "required")


def test_an_empty_template_body_is_refused(tmp_path):
    error = refused(tmp_path, config(templates=(template(body="  \n  "),)))
    assert_names(error, "extraction_templates[0].body", "empty")


def test_an_unknown_closed_status_is_refused(tmp_path):
    error = refused(tmp_path, config(leads={"closed_statuses": ["Qualified", "Won"]}))
    assert_names(error, "leads.closed_statuses", "'Won'", "expected one of", "Disqualified")


def test_an_unknown_default_status_is_refused(tmp_path):
    error = refused(tmp_path, config(leads={"default_status": "Fresh"}))
    assert_names(error, "leads.default_status", "'Fresh'", "expected one of", "Attempting")


def test_a_closed_default_status_is_refused(tmp_path):
    error = refused(tmp_path, config(leads={"default_status": "Qualified"}))
    assert_names(error, "leads.default_status", "open status")


def test_an_empty_list_of_statuses_is_refused(tmp_path):
    error = refused(tmp_path, config(leads={"statuses": [], "closed_statuses": []}))
    assert_names(error, "leads.statuses", "at least one")


def test_an_unknown_default_source_is_refused(tmp_path):
    error = refused(tmp_path, config(leads={"default_source": "Fax"}))
    assert_names(error, "leads.default_source", "'Fax'", "expected one of", "Partner")


def test_an_unknown_mailbox_source_is_refused(tmp_path):
    error = refused(tmp_path, config(mailboxes=(mailbox(), mailbox(name="b", source="Fax"))))
    assert_names(error, "mailboxes[1].source", "'Fax'", "expected one of", "Website")


def test_a_duplicate_mailbox_name_is_refused(tmp_path):
    error = refused(tmp_path, config(mailboxes=(mailbox(), mailbox(host="imap2.example.com"))))
    assert_names(error, "mailboxes[1].name", "duplicate", "'sales'", "unique")


def test_a_duplicate_owner_email_is_refused_ignoring_case(tmp_path):
    owners = (owner(), owner(email="carl@example.com"), owner(email="Ana@Example.COM", name="Ana again"))
    error = refused(tmp_path, config(owners=owners))
    assert_names(error, "owners[2].email", "duplicate", "ana@example.com", "unique")


def test_a_duplicate_template_name_is_refused(tmp_path):
    error = refused(tmp_path, config(templates=(template(), template(subject=None))))
    assert_names(error, "extraction_templates[1].name", "duplicate", "'contact-form'", "unique")


def test_a_mailbox_naming_an_unknown_template_is_refused(tmp_path):
    error = refused(tmp_path, config(mailboxes=(mailbox(templates=["contact-form", "contact-from"]),)))
    assert_names(error, "mailboxes[0].templates", "unknown extraction template", "'contact-from'", "contact-form")


def test_a_template_naming_an_unknown_filter_is_refused_at_start(tmp_path):
    bad = template(name="partner-form", body="Name: {{ name | upper }}\nEmail: {{ email }}\n")
    path = write(tmp_path, config(templates=(template(), bad)))

    with pytest.raises(ConfigError) as caught:
        bootstrap.build_app(str(path), ENV)

    error = caught.value
    assert error.path == path and str(path) in str(error)
    assert_names(error, "extraction_templates[1].body", "unknown filter", "'upper'", "optional", "multiline")


def test_invalid_toml_is_refused_naming_the_file_and_the_line(tmp_path):
    error = refused(tmp_path, config() + "\n[ingest\nbatch_size = 3\n")
    assert error.key == ""
    assert "not valid TOML" in str(error)
    assert "line" in str(error)


def test_a_missing_file_is_refused_saying_how_to_name_one(tmp_path):
    path = tmp_path / "nowhere" / "leadtap.toml"
    with pytest.raises(ConfigError) as caught:
        load_config(path, ENV)
    assert caught.value.key == ""
    assert str(path) in str(caught.value)
    assert "not found" in str(caught.value)
    assert "--config" in str(caught.value) and "LEADTAP_CONFIG" in str(caught.value)


@pytest.mark.parametrize("written", ["fast", "10", "1h30", "15 minutes", "0s", "= 0", "= -5", "= true", "= [60]"])
def test_a_bad_duration_is_refused_with_an_example(tmp_path, written):
    error = refused(tmp_path, config(mailboxes=(mailbox(poll_interval=written),)))
    assert_names(error, "mailboxes[0].poll_interval", "duration")


@pytest.mark.parametrize("written", ["= inf", "= nan", "9999999999d"])
def test_a_poll_interval_that_is_not_finite_or_too_large_is_refused(tmp_path, written):
    error = refused(tmp_path, config(mailboxes=(mailbox(poll_interval=written),)))
    assert_names(error, "mailboxes[0].poll_interval", "duration")


@pytest.mark.parametrize("written", ["= nan", "= inf"])
def test_a_timeout_that_is_not_finite_is_refused(tmp_path, written):
    assert_names(refused(tmp_path, config(ingest={"timeout": written})), "ingest.timeout", "duration")


@pytest.mark.parametrize(
    "written",
    [
        "25XB",
        "big",
        "",
        "-5MB",
        "= 0",
        "= -1",
        "= true",
        "= 2.5",
        "0MB",
    ],
)
def test_a_bad_size_is_refused_with_an_example(tmp_path, written):
    error = refused(tmp_path, config(ingest={"max_message_size": written}))
    assert_names(error, "ingest.max_message_size", "size", "25MB")


@pytest.mark.parametrize("host", ["imap.example.com", "10.0.0.5", "localhost.example.com"])
def test_plain_security_to_a_host_that_is_not_loopback_is_refused(tmp_path, host):
    error = refused(tmp_path, config(mailboxes=(mailbox(security="plain", host=host),)))
    assert_names(error, "mailboxes[0].security", "loopback", host)


def test_an_unknown_security_mode_is_refused_listing_the_modes(tmp_path):
    error = refused(tmp_path, config(mailboxes=(mailbox(security="ssl"),)))
    assert_names(error, "mailboxes[0].security", "'ssl'", "tls", "starttls", "plain")


@pytest.mark.parametrize("port", [0, 65536])
def test_a_port_out_of_range_is_refused(tmp_path, port):
    error = refused(tmp_path, config(mailboxes=(mailbox(port=port),)))
    assert_names(error, "mailboxes[0].port", "between 1 and 65535")


@pytest.mark.parametrize("email", ["ana", "ana@example", "Ana <ana@example.com>", "ana@@example.com"])
def test_a_bad_owner_email_is_refused(tmp_path, email):
    error = refused(tmp_path, config(owners=(owner(), owner(email=email))))
    assert_names(error, "owners[1].email", "not an email address")


def test_a_batch_size_below_one_is_refused(tmp_path):
    assert_names(refused(tmp_path, config(ingest={"batch_size": 0})), "ingest.batch_size", "at least 1")


# --- where the config file is found -------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "environ", "expected"),
    [
        ("given.toml", {"LEADTAP_CONFIG": "env.toml"}, "given.toml"),
        (None, {"LEADTAP_CONFIG": "/etc/leadtap/env.toml"}, "/etc/leadtap/env.toml"),
        (None, {}, "leadtap.toml"),
        (None, {"LEADTAP_CONFIG": ""}, "leadtap.toml"),
    ],
    ids=["option-wins", "environment-next", "default", "empty-variable-means-default"],
)
def test_the_config_file_is_the_option_then_the_environment_then_leadtap_toml(given, environ, expected):
    assert bootstrap.config_path(given, environ) == Path(expected)


def test_build_app_loads_the_file_named_by_the_environment_and_compiles_the_templates(tmp_path):
    path = write(tmp_path, config(), name="from-env.toml")
    app = bootstrap.build_app(None, {**ENV, "LEADTAP_CONFIG": str(path)})
    try:
        assert app.config.path == path
        assert list(app.templates) == ["contact-form"]
    finally:
        app.close()


# --- through the command line ----------------------------------------------------------------


def run_check(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "check"])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_config_error_line(err: str, out: str, *expected: str) -> None:
    assert "Traceback" not in err and "Traceback" not in out
    lines = [line for line in err.splitlines() if line.startswith("leadtap: configuration error:")]
    assert len(lines) == 1, err
    for word in expected:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


def test_the_cli_refuses_a_bad_config_with_one_line_and_exit_code_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SALES_PW", PASSWORD)
    path = write(tmp_path, config(mailboxes=(mailbox(security="plain"),)))

    code, out, err = run_check(capsys, "--config", str(path))

    assert code == 2
    assert_one_config_error_line(err, out, str(path), "mailboxes[0].security", "loopback")
    assert err.strip().count("\n") == 0
    assert PASSWORD not in err and PASSWORD not in out


def test_check_names_a_missing_password_variable_and_reading_leads_needs_none(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SALES_PW", raising=False)
    path = write(tmp_path, config())
    assert main(["--config", str(path), "db", "upgrade"]) == 0

    code, out, err = run_check(capsys, "--config", str(path))

    assert code == 1 and "Traceback" not in err + out
    (line,) = [line for line in out.splitlines() if line.startswith("FAIL  mailbox sales:")]
    assert str(path) in line and "mailboxes[0].password_env" in line and "SALES_PW" in line
    for command in (["leads", "list"], ["reminders", "list"], ["failed", "list"], ["notifications", "list"]):
        assert main(["--config", str(path), *command]) == 0, command


def test_relative_paths_in_the_config_are_the_config_files_directorys(tmp_path, monkeypatch):
    home = tmp_path / "etc"
    home.mkdir()
    (home / "secret").write_text("from-the-file\n")
    monkeypatch.chdir(tmp_path)  # another directory than the config's
    text = config(mailboxes=(mailbox(password_env=None, password_file="secret", ca_file="ca.pem"),),
                  extra='[reminders]\ntemplates_dir = "mail-templates"\n').replace("sqlite:///crm.db",
                                                                                   "sqlite:///data/crm.db")
    cfg = load_config(write(home, text), ENV)

    assert cfg.database.url == f"sqlite:///{home}/data/crm.db"
    assert cfg.mailboxes[0].password.reveal() == "from-the-file"
    assert cfg.mailboxes[0].ca_file == f"{home}/ca.pem"
    assert cfg.reminders.templates_dir == f"{home}/mail-templates"
    absolute = load_config(write(home, text.replace("sqlite:///data/crm.db", "sqlite:////srv/crm.db")), ENV)
    assert absolute.database.url == "sqlite:////srv/crm.db"
    driver = load_config(write(home, text.replace("sqlite:///data/crm.db", "sqlite+pysqlite:///crm.db")), ENV)
    assert driver.database.url == f"sqlite+pysqlite:///{home}/crm.db"


def test_the_cli_refuses_a_template_with_an_unknown_filter(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SALES_PW", PASSWORD)
    path = write(tmp_path, config(templates=(template(body="Name: {{ name | shout }}\n"),)))

    code, out, err = run_check(capsys, "--config", str(path))

    assert code == 2
    assert_one_config_error_line(err, out, str(path), "extraction_templates[0].body", "unknown filter")


def test_the_cli_reads_the_config_named_by_leadtap_config(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SALES_PW", PASSWORD)
    path = write(tmp_path, config(leads={"default_status": "Nope"}), name="env.toml")
    monkeypatch.setenv("LEADTAP_CONFIG", str(path))

    code, out, err = run_check(capsys)

    assert code == 2
    assert_one_config_error_line(err, out, str(path), "leads.default_status")


def test_the_cli_without_any_config_says_leadtap_toml_was_not_found(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LEADTAP_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)

    code, out, err = run_check(capsys)

    assert code == 2
    assert_one_config_error_line(err, out, "leadtap.toml", "not found", "--config")


def test_the_shipped_example_config_loads(tmp_path):
    from tests.helpers import ROOT

    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "imap-sales").write_text("imap-secret\n")
    (credentials / "smtp").write_text("smtp-secret\n")
    (credentials / "commands").write_text("c" * 64 + "\n")
    config = load_config(ROOT / "leadtap.example.toml", {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert config.mailboxes[0].password.reveal() == "imap-secret"
    assert config.smtp.password.reveal() == "smtp-secret"
    assert config.commands.secret_bytes() == b"c" * 64 and config.opportunities.deals.onboarding is not None
    assert [rule.name for rule in config.reminders.rules] == ["new-untouched", "offer-waiting", "task-overdue"]
    assert config.pipeline.option("Attempting").locked and config.pipeline.follow_up is not None
    assert config.warnings == ()


SMTP = table("[smtp]", {"host": "127.0.0.1", "security": "plain", "from": "leadtap <crm@example.com>"})


def test_notifications_are_off_by_default_and_read_when_given(tmp_path):
    assert load(tmp_path, config()).notifications.enabled is False
    on = load(tmp_path, config(extra=SMTP + table("[notifications]", {"new_lead": "welcome", "send_every": "10s",
                                                                         "max_attempts": 3}))).notifications
    assert (on.enabled, on.new_lead, on.send_every, on.max_attempts) == (True, "welcome", timedelta(seconds=10), 3)


@pytest.mark.parametrize("extra, key, words", [
    (table("[notifications]", {"new_lead": "new_lead"}), "smtp", ["[smtp] table is required"]),
    (SMTP + table("[notifications]", {"new_lead": "../x"}), "notifications.new_lead", ["template name"]),
    (SMTP + table("[notifications]", {"new_lead": "x", "max_attempts": 0}), "notifications.max_attempts",
     ["at least 1"]),
])
def test_a_wrong_notifications_table_is_refused(tmp_path, extra, key, words):
    error = refused(tmp_path, config(extra=extra))
    assert_names(error, key, *words)


@pytest.mark.parametrize("text_of, key, nearest", [
    (lambda: config(mailboxes=(mailbox(poll_intervall="60s"),)), "mailboxes[0].poll_intervall", "poll_interval"),
    (lambda: config(extra='[reminder]\nsweep_every = "1m"\n'), "reminder", "reminders"),
    (lambda: config(ingest={"batchsize": 10}), "ingest.batchsize", "batch_size"),
])
def test_an_unknown_key_suggests_the_nearest_known_one(tmp_path, text_of, key, nearest):
    assert_names(refused(tmp_path, text_of()), key, "unknown key", f"did you mean '{nearest}'?")


def test_an_unknown_key_far_from_any_known_one_suggests_nothing(tmp_path):
    error = refused(tmp_path, config(mailboxes=(mailbox(colour="blue"),)))
    assert "did you mean" not in str(error)


def test_a_database_that_cannot_be_opened_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SALES_PW", PASSWORD)
    path = write(tmp_path, config().replace("sqlite:///crm.db", "sqlite:///no/such/dir/crm.db"))

    code = main(["--config", str(path), "db", "upgrade"])

    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"cannot open the SQLite database '{tmp_path}/no/such/dir/crm.db'" in err
    assert f"the directory '{tmp_path}/no/such/dir' does not exist" in err


def test_run_refuses_to_start_without_its_secrets(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SALES_PW", raising=False)
    path = write(tmp_path, config())

    code = main(["--config", str(path), "run"])

    err = capsys.readouterr().err
    assert code == 2 and "mailboxes[0].password_env" in err and "SALES_PW" in err
