"""Prometheus metrics from `leadtap run` ([metrics] listen), read over HTTP
as Prometheus would, against the real Dovecot and SMTP server; and `check`
on the metrics address."""

from __future__ import annotations

import signal
import socket
import urllib.request

import pytest

from leadtap.core.config.load import load_config
from leadtap.core.errors import ConfigError
from leadtap.dovecot import free_port
from tests.helpers import enquiry, write_config
from tests.smtp import SmtpServer
from tests.test_daemon import REMINDERS, start_run, upgrade, wait_for

# The daemon tests' SMTP server and reminder rule (after = "1s"), with metrics and notifications on.
EXTRA = ('[metrics]\nlisten = "127.0.0.1:{metrics}"\n\n[notifications]\nnew_lead = "new_lead"\n'
         + REMINDERS.replace("port = {port}", "port = {smtp}").replace('after = "2s"', 'after = "1s"'))


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_run_serves_what_it_does_as_prometheus_metrics(tmp_path, mailbox):
    port = free_port()
    with SmtpServer() as smtp:
        config = write_config(tmp_path / "leadtap.toml", f"sqlite:///{tmp_path / 'leadtap.db'}",
                              mailbox.section(poll_interval="1h"), extra=EXTRA.format(metrics=port, smtp=smtp.port))
        upgrade(config)
        process = start_run(config)
        try:
            wait_for(lambda: _up(port), what="the metrics endpoint")
            wait_for(lambda: scrape(port).get('leadtap_idle_connected{mailbox="sales"}') == 1.0, what="IDLE up")
            mailbox.append(enquiry(name="Jo Smith", email="jo@client.test"))
            wait_for(lambda: scrape(port).get('leadtap_reminders_total{result="sent"}', 0) >= 1, timeout=30,
                     what="the reminder counted")
            samples = scrape(port)
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=15)
    assert samples['leadtap_messages_total{mailbox="sales",outcome="lead"}'] == 1.0
    assert samples['leadtap_leads_created_total{mailbox="sales"}'] == 1.0
    assert samples['leadtap_poll_duration_seconds_count{mailbox="sales"}'] >= 2  # the first poll, and IDLE's
    assert samples['leadtap_last_successful_poll_timestamp_seconds{mailbox="sales"}'] > 1.7e9
    assert samples['leadtap_messages_waiting{mailbox="sales"}'] == 0.0
    assert samples['leadtap_messages_failed{mailbox="sales"}'] == 0.0
    assert samples['leadtap_notifications_total{result="sent"}'] == 1.0
    assert samples['leadtap_reminders_total{result="sent"}'] == 1.0


def _up(port: int) -> bool:
    try:
        scrape(port)
        return True
    except OSError:
        return False


def test_check_tests_the_metrics_address(tmp_path, mailbox, capsys):
    from leadtap.cli import main

    port = free_port()
    extra = f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    config = write_config(tmp_path / "leadtap.toml", f"sqlite:///{tmp_path / 'leadtap.db'}", mailbox.section(),
                          extra=extra)
    main(["--config", str(config), "db", "upgrade"])
    capsys.readouterr()
    assert main(["--config", str(config), "check"]) == 0
    assert f"ok    metrics: 127.0.0.1:{port} is free" in capsys.readouterr().out

    with socket.create_server(("127.0.0.1", port)):  # something else holds it
        assert main(["--config", str(config), "check"]) == 1
    assert f"FAIL  metrics: {config}: metrics.listen: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().out


@pytest.mark.parametrize("listen", ["9464", "localhost:", ":9464", "127.0.0.1:99999", "127.0.0.1:x"])
def test_a_bad_metrics_address_is_refused(tmp_path, listen):
    path = tmp_path / "leadtap.toml"
    path.write_text(f'[metrics]\nlisten = "{listen}"\n')
    with pytest.raises(ConfigError) as error:
        load_config(path, {})
    assert error.value.key == "metrics.listen" and "HOST:PORT" in str(error.value)


def test_on_postgresql_the_worker_says_which_mailboxes_it_serves(tmp_path, mailbox, postgres_url):
    port = free_port()
    config = write_config(tmp_path / "leadtap.toml", postgres_url, mailbox.section(poll_interval="1s"),
                          extra=f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    upgrade(config)
    process = start_run(config)
    try:
        wait_for(lambda: _up(port) and scrape(port).get('leadtap_lease_held{mailbox="sales"}') == 1.0,
                 what="the lease held and shown")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
    assert process.returncode == 0
