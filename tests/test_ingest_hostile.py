"""Real-world and hostile mail through the whole ingest, against Dovecot on
SQLite and PostgreSQL: what a mail client can read becomes a lead with its
warnings, every message is accounted for, no message holds the mailbox, and
the parsing process never outlives a killed poll."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import FIXTURES, ROOT, enquiry
from tests.test_ingest import env  # noqa: F401  (the fixture)

REPAIR = FIXTURES / "repair"


def test_mail_a_client_can_read_becomes_leads_with_their_warnings(env, mailbox):
    names = ("outer_boundary_reused", "gb2312_holding_gbk", "one_bad_byte_in_utf8", "header_problems")
    for number, name in enumerate(names):  # four senders: four leads
        mailbox.append((REPAIR / f"{name}.eml").read_bytes().replace(b"jo@acme.test", b"jo%d@acme.test" % number))
    mailbox.append((FIXTURES / "unreadable.eml").read_bytes())
    env.configure(mailbox.section())
    env.upgrade()

    code, out, err = env.cli("poll")

    assert code == 1  # one message truly cannot be read
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    logged = [e for e in events if e.get("event") == "message_lead" and e.get("warnings")]
    assert len(logged) == 3
    assert all(e["mailbox"] == "sales" and e["uid"] and e["lead_id"] for e in logged)
    assert "sales: 4 new leads, 1 failed, 3 repaired" in out
    leads = {lead["subject"]: lead for lead in env.leads()}
    assert leads["Outlook Express for Mac"]["warnings"] == ["MIME: start boundary not found"]
    assert leads["One bad byte"]["warnings"] == ["utf-8 text: 1 character replaced"]
    assert leads["GBK in gb2312"]["message"] == "您好，请报价：镕铁 100 吨。"
    assert leads["GBK in gb2312"]["warnings"] == []
    code, out, _ = env.cli("leads", "show", str(leads["=?utf-8?b?A?="]["id"]))
    shown = json.loads(out)
    assert "Subject: malformed encoded words, kept as sent" in shown["warnings"]
    assert [e.error for e in env.ledger() if e.outcome == "failed"] == ["no header block: this is not a mail message"]


def test_a_message_that_takes_too_long_to_read_fails_alone_and_is_set_aside(env, mailbox):
    mailbox.append(enquiry(name="Before", email="before@client.test"))
    slow = b"From: a@b.test\nSubject: slow\nContent-Type: text/html\n\n" + b"<p>a lot to read</p>\n" * 400_000
    mailbox.append(slow)
    mailbox.append(enquiry(name="After", email="after@client.test"))
    env.configure(mailbox.section(), extra="[ingest]\nmessage_timeout = \"0.2s\"\nmax_attempts = 2\n")
    env.upgrade()

    env.poll()
    env.poll()
    env.poll()

    assert sorted(lead["name"] for lead in env.leads()) == ["After", "Before"]
    failed = [e for e in env.ledger() if e.outcome == "failed"]
    assert [(e.uid, e.attempts, e.reason) for e in failed] == [(2, 2, "set aside after 2 attempts")]
    assert "took longer than 0.2 s to read" in failed[0].error


def hostile_message(rng: random.Random, number: int) -> bytes:
    """One of the shapes real and hostile mail takes, with random parts."""
    junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
    charset = rng.choice([b"utf-8", b"gb2312", b"x-bogus", b"iso-8859-1", b"utf-7", b"\"\"", b"unicode-1-1-utf-7"])
    head = b"From: Sender %d <s%d@client.test>\nSubject: hostile %d\nMessage-ID: <h%d@client.test>\n" % (
        number, number, number, number)
    shapes = [
        lambda: head + b"Content-Type: text/plain; charset=" + charset + b"\n\n" + junk,
        lambda: head + b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n" + junk,
        lambda: head + b"Subject: =?utf-8?b?" + junk.hex().encode()[:50] + b"?=\nDate: 1 Jan 999999999999\n\nhi\n",
        lambda: head + b'Content-Type: multipart/mixed; boundary="B"\n\n' + b"--B\nContent-Type: text/plain\n\npart\n" * rng.randrange(1, 2000),
        lambda: head + b"X-Long: " + b"a" * rng.randrange(70_000, 300_000) + b"\n\nlong header\n",
        lambda: head + b"Content-Type: text/html\n\n" + b"<a" * rng.randrange(1, 200_000),
        lambda: head + b"\n" + b"Name: Jo" + b" " * rng.randrange(1, 50_000) + b"x\n",
        lambda: head + b'Content-Type: multipart/alternative; boundary="B"\n\n--B\nContent-Type: multipart/alternative; boundary="B"\n\n--B\nContent-Type: text/plain\n\nnested\n--B--\n',
        lambda: junk.replace(b"\n", b" ").replace(b":", b";") or b"x",
    ]
    return rng.choice(shapes)()


def test_a_few_hundred_generated_hostile_messages_are_all_accounted_for(env, mailbox):
    rng = random.Random(20261124)
    appended = 0
    with mailbox.client() as client:
        for number in range(300):
            try:
                client.append("INBOX", hostile_message(rng, number))
            except Exception:  # the server may refuse bytes it cannot store (a NUL): not ours to count
                continue
            appended += 1
    env.configure(mailbox.section(), extra="[ingest]\nbatch_size = 40\n")
    env.upgrade()

    env.poll()

    entries = env.ledger()
    assert appended > 250
    assert len(entries) == appended
    assert len({e.uid for e in entries}) == appended
    failed = [e for e in entries if e.outcome == "failed"]
    assert all(e.error == "no header block: this is not a mail message" for e in failed), {e.error for e in failed}
    assert mailbox.unseen() == sorted(e.uid for e in failed)


# --- the parsing process ends with a killed poll -----------------------------------------


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_poll_leaves_no_parsing_process_behind(env, mailbox):
    with mailbox.client() as client:
        for i in range(1500):
            client.append("INBOX", enquiry(name=f"Person {i}", email=f"p{i}@client.test"))
    env.configure(mailbox.section(), extra="[ingest]\nbatch_size = 20\nparallel_parsing = true\n")
    env.upgrade()
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    poll = subprocess.Popen([sys.executable, "-m", "leadtap", "--config", str(env.path), "poll"], cwd=ROOT,
                            env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        helpers: set[int] = set()
        for _ in range(600):  # the parsing process and the resource tracker start with the backlog
            helpers = descendants(poll.pid)
            if len(helpers) >= 2:
                break
            time.sleep(0.05)
        assert len(helpers) >= 2, "the poll never started its parsing process"
        poll.send_signal(signal.SIGKILL)
        poll.wait(10)
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in helpers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in helpers if alive(pid)]
    finally:
        if poll.poll() is None:
            poll.kill()
