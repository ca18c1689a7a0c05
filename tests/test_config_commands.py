"""The [commands] table: its secret read when first needed, a missing or
short one refused naming its key; every other mistake refused at load."""

from __future__ import annotations

from datetime import timedelta

import pytest

from leadtap.core.errors import ConfigError
from tests.test_config import SMTP, assert_names, config, load, refused

LONG = "x" * 32


def commands(body: str, smtp: str = SMTP) -> str:
    return config(extra=smtp + "\n[commands]\n" + body)


def test_the_secret_is_read_when_needed_and_the_rest_at_load(tmp_path):
    (tmp_path / "commands.secret").write_text(LONG + "\n")
    loaded = load(tmp_path, commands('secret_file = "commands.secret"\naddress = "crm@example.com"\n'
                                     'token_max_age = "14d"\nauthserv_id = "mx.example.com"\n'))
    settings = loaded.commands
    assert settings.enabled and settings.secret_bytes() == LONG.encode()
    assert (settings.address, settings.token_max_age, settings.authserv_id) == (
        "crm@example.com", timedelta(days=14), "mx.example.com")
    assert LONG not in repr(settings)
    assert (settings.digest_token_max_age, settings.require_dkim_identity, settings.confirmations_per_hour) == (
        timedelta(days=7), "domain", 10)  # the defaults
    assert not load(tmp_path, config()).commands.enabled
    tuned = load(tmp_path, commands('secret_file = "commands.secret"\ndigest_token_max_age = "2d"\n'
                                    'authserv_id = "mx.example.com"\nrequire_dkim_identity = "mailbox"\n'
                                    'confirmations_per_hour = 4\n')).commands
    assert (tuned.digest_token_max_age, tuned.require_dkim_identity, tuned.confirmations_per_hour) == (
        timedelta(days=2), "mailbox", 4)


def read_refused(tmp_path, body: str, environ=None) -> ConfigError:
    loaded = load(tmp_path, commands(body), **({"environ": environ} if environ is not None else {}))
    with pytest.raises(ConfigError) as caught:
        loaded.commands.secret.reveal()
    return caught.value


def test_a_missing_or_short_secret_is_refused_when_read(tmp_path):
    assert_names(read_refused(tmp_path, 'secret_file = "nowhere"\n'), "commands.secret_file",
                 "cannot read the secret file")
    (tmp_path / "short").write_text("too short")
    assert_names(read_refused(tmp_path, 'secret_file = "short"\n'), "commands.secret_file",
                 "9 bytes; at least 32")
    assert_names(read_refused(tmp_path, 'secret_env = "LEADTAP_COMMANDS"\n', environ={}), "commands.secret_env",
                 "LEADTAP_COMMANDS is not set")
    loaded = load(tmp_path, commands('secret_env = "LEADTAP_COMMANDS"\n'), environ={"LEADTAP_COMMANDS": LONG})
    assert loaded.commands.secret_bytes() == LONG.encode()


@pytest.mark.parametrize("body, key, words", [
    ('address = "crm@example.com"\n', "commands.secret_file", "exactly one of secret_file or secret_env"),
    ('secret_file = "a"\nsecret_env = "B"\n', "commands.secret_file", "exactly one"),
    ('secret_file = "a"\naddress = "crm"\n', "commands.address", "not an email address"),
    ('secret_file = "a"\ntoken_max_age = "forever"\n', "commands.token_max_age", "not a duration"),
    ('secret_file = "a"\nsecret = "inline"\n', "commands.secret", "unknown key"),
    ('secret_file = "a"\nrequire_dkim_identity = "person"\n', "commands.require_dkim_identity",
     "not one of: domain, mailbox"),
    ('secret_file = "a"\nrequire_dkim_identity = "mailbox"\n', "commands.require_dkim_identity", "needs authserv_id"),
    ('secret_file = "a"\nconfirmations_per_hour = 0\n', "commands.confirmations_per_hour", "at least 1"),
    ('secret_file = "a"\nauthserv_id = "SPF"\n', "commands.authserv_id", "names a method, not a server"),
    ('secret_file = "a"\ndigest_token_max_age = "0s"\n', "commands.digest_token_max_age", "a positive duration"),
])
def test_each_commands_mistake_is_refused_naming_its_key(tmp_path, body, key, words):
    assert_names(refused(tmp_path, commands(body)), key, words)


def test_commands_need_smtp_to_answer(tmp_path):
    assert_names(refused(tmp_path, commands('secret_file = "a"\n', smtp="")), "smtp", "answers replies by email")
