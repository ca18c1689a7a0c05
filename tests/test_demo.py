"""The demo, as a new user runs it: sample enquiries become leads, and with
--keep its Dovecot stays up to go on with, until Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

from imapclient import IMAPClient

from tests.helpers import ROOT, enquiry, run_leadtap


def test_the_demo_makes_leads_and_keeps_its_mailbox_up_until_ctrl_c(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "leadtap", "demo", "--dir", str(tmp_path / "demo"), "--keep"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C stops it." in line:
                break
        text = "".join(lines)
        assert "3 new leads, 1 not a lead" in text
        port = int(re.search(r"IMAP on 127\.0\.0\.1:(\d+)", text).group(1))
        config = tmp_path / "demo" / "leadtap.toml"
        password = (tmp_path / "demo" / "mailbox-password").read_text()
        with IMAPClient("127.0.0.1", port=port, ssl=False) as client:
            client.login("sales@example.com", password)
            client.append("INBOX", enquiry(name="Kim Lee", email="kim@client.test"))

        polled = run_leadtap("poll", config=config)

        assert polled.returncode == 0 and "1 new lead" in polled.stdout
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=20)
        assert process.returncode == 0 and "Dovecot stopped" in out
        assert run_leadtap("poll", config=config).returncode == 1  # the mailbox is gone with it
    finally:
        if process.poll() is None:
            process.kill()


def test_the_demo_works_with_a_relative_dir_and_its_config_works_from_anywhere(tmp_path):
    demo = subprocess.run([sys.executable, "-m", "leadtap", "demo", "--dir", "runs/demo"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})

    assert demo.returncode == 0, demo.stderr
    assert "3 new leads, 1 not a lead" in demo.stdout and "(3 leads)" in demo.stdout
    listed = run_leadtap("leads", "list", config=tmp_path / "runs" / "demo" / "leadtap.toml")  # run from the repository
    assert listed.returncode == 0 and "(3 leads)" in listed.stdout
