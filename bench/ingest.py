"""Ingest benchmark: N synthetic web-form notifications (text + HTML, 1–4 KB)
in a local Dovecot, one `leadtap poll` into SQLite, and — on the same messages,
in the same run — mail-parser's parse-only rate for comparison.

    .venv/bin/python bench/ingest.py [-n 50000]
    .venv/bin/python bench/ingest.py --workers 1,2 --database postgresql+psycopg://postgres@127.0.0.1/test [-n 20000]

Prints messages/s of the whole pass, its peak memory (the poll runs in a child
process; its RSS and its parsing helper's are sampled and summed), the
parse-only rate and their ratio.
Targets: ratio >= 0.6, peak memory < 200 MB at N = 50,000.

With --workers: the N messages spread over --mailboxes mailboxes, ingested by
that many `leadtap run` processes on one PostgreSQL database (each run on a
schema of its own), timed from the workers' start to the last message in the
ledger; messages/s per worker count and the ratio to one worker (target >= 1.6
for two on two cores).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import mailparser  # noqa: E402
from imapclient import IMAPClient  # noqa: E402

from leadtap.dovecot import Dovecot  # noqa: E402

WORDS = ("quote seats annual plan licence support onboarding training team budget invoice "
         "integration renewal migration pilot timeline contract pricing demo call").split()

CONFIG = """
[database]
url = "sqlite:///{db}"

[ingest]
batch_size = {batch}
parallel_parsing = {parallel}

[[owners]]
email = "ana@example.com"
roles = ["sales"]

[[owners]]
email = "ben@example.com"
roles = ["sales"]

[[mailboxes]]
name = "bench"
host = "127.0.0.1"
port = {port}
security = "plain"
username = "bench"
password = "{password}"
templates = ["contact-form"]
{extra}

{template}"""


# A workflow on New whose steps come due later (nothing runs during the pass: what owing them costs).
WORKFLOW = """
[[statuses]]
name = "New"
steps = [ { task = "Call {{ lead.name }}", due = "4h", after = "1d" }, { assign = "sales", after = "5d" } ]
"""


WEBHOOK = """
[[webhooks]]
name = "hook{n}"
url = "http://127.0.0.1:9/hooks"
events = ["lead.created"]
secret_env = "BENCH_WEBHOOK_SECRET"
"""


# The notifications' extraction template, for every benchmark that polls them (put into a config by format()).
TEMPLATE = """
[[extraction_templates]]
name = "contact-form"
from = "*@forms.example.com"
body = '''
Name: {{ name }}
Email: {{ email }}
Phone: {{ phone | optional }}
Company: {{ company | optional }}
Message: {{ message | multiline }}
'''
"""


def notification(i: int, rng: random.Random) -> bytes:
    """A web-form notification, text and HTML, of 1–4 KB."""
    name, company = f"Person {i}", f"Company {i % 997}"
    text_words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 220)))
    fields = [("Name", name), ("Email", f"person{i}@client{i % 389}.example"), ("Phone", f"+370 6{i:07d}"),
              ("Company", company), ("Message", text_words)]
    msg = EmailMessage()
    msg["From"] = "Website <noreply@forms.example.com>"
    msg["To"] = "sales@example.com"
    msg["Subject"] = f"New enquiry #{i}"
    msg["Date"] = format_datetime(datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(minutes=i))
    msg["Message-ID"] = f"<bench-{i}@forms.example.com>"
    msg.set_content("".join(f"{k}: {v}\n" for k, v in fields))
    rows = "".join(f"<tr><td>{k}:</td><td>{v}</td></tr>" for k, v in fields)
    msg.add_alternative(f"<html><body><p>New enquiry</p><table>{rows}</table></body></html>", subtype="html")
    return bytes(msg)


def fill_mailbox(server: Dovecot, n: int, user: str = "bench", first: int = 0) -> None:
    rng = random.Random(7 + first)
    started = time.perf_counter()
    with IMAPClient(server.host, port=server.port, ssl=False) as client:
        client.login(user, server.password)
        chunk: list[bytes] = []
        for i in range(n):
            chunk.append(notification(first + i, rng))
            if len(chunk) == 500 or i == n - 1:
                client.multiappend("INBOX", chunk)
                chunk = []
                print(f"\rappending: {i + 1}/{n}", end="", file=sys.stderr, flush=True)
    print(f"\rappended {n} messages in {time.perf_counter() - started:.1f}s", file=sys.stderr)


def run_poll(config: Path) -> tuple[float, float, float, str]:
    """One `leadtap poll` in a child process: (seconds, peak RSS of the largest
    process in MB, peak RSS of the whole process tree in MB, output)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "leadtap", "--config", str(config), "--log-level", "warning", "poll"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    tree_peak = [0]
    sampler = threading.Thread(target=sample_tree_rss, args=(process, tree_peak), daemon=True)
    sampler.start()
    out, err = process.communicate()
    seconds = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"poll failed ({process.returncode}): {out}\n{err[-2000:]}")
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return seconds, largest, tree_peak[0] / 1024, out.strip()


def sample_tree_rss(process: subprocess.Popen, peak: list[int]) -> None:
    """Every 50 ms, the summed VmRSS (kB) of the poll and its descendants."""
    while process.poll() is None:
        peak[0] = max(peak[0], sum(rss_kb(pid) for pid in tree(process.pid)))
        time.sleep(0.05)


def tree(pid: int) -> list[int]:
    pids, index = [pid], 0
    while index < len(pids):
        try:
            for task in os.listdir(f"/proc/{pids[index]}/task"):
                with open(f"/proc/{pids[index]}/task/{task}/children") as f:
                    pids.extend(int(child) for child in f.read().split())
        except OSError:
            pass
        index += 1
    return pids


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def parse_only_rate(n: int) -> float:
    rng = random.Random(7)
    messages = [notification(i, rng) for i in range(n)]
    started = time.perf_counter()
    for raw in messages:
        mailparser.parse_from_bytes(raw)
    return n / (time.perf_counter() - started)


WORKERS_MAILBOX = """
[[mailboxes]]
name = "bench{i}"
host = "127.0.0.1"
port = {port}
security = "plain"
username = "bench{i}"
password = "{password}"
templates = ["contact-form"]
unread_only = false
poll_interval = "1s"
"""


def run_workers(args) -> None:
    """1, 2, … `leadtap run` workers over the same mailboxes, each count on a fresh schema."""
    from sqlalchemy import create_engine, func, select, text

    from leadtap.core.store.db import LedgerEntry

    per_box = args.n // args.mailboxes
    admin = create_engine(args.database, isolation_level="AUTOCOMMIT")
    rates = {}
    with Dovecot(tls=False) as server:
        for i in range(args.mailboxes):
            fill_mailbox(server, per_box, f"bench{i}", first=i * per_box)
        total = per_box * args.mailboxes
        for count in [int(c) for c in args.workers.split(",")]:
            schema = f"bench_{os.getpid()}_{count}"
            with admin.connect() as c:
                c.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
                c.execute(text(f'CREATE SCHEMA "{schema}"'))
            url = f"{args.database}?options=-csearch_path%3D{schema}"
            work = Path(tempfile.mkdtemp(prefix="leadtap-bench-"))
            config = work / "leadtap.toml"
            boxes = "".join(WORKERS_MAILBOX.format(i=i, port=server.port, password=server.password)
                            for i in range(args.mailboxes))
            single = CONFIG.format(template=TEMPLATE, db="DB", port=server.port, password=server.password,
                                   batch=args.batch, parallel="false" if args.sequential else "true",
                                   extra="").replace('url = "sqlite:///DB"', f'url = "{url}"')
            head, rest = single.split("[[mailboxes]]")
            config.write_text(head + boxes + "[[extraction_templates]]" + rest.split("[[extraction_templates]]")[1])
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            subprocess.run([sys.executable, "-m", "leadtap", "--config", str(config), "db", "upgrade"], check=True,
                           capture_output=True, env=env)
            engine = create_engine(url)
            started = time.perf_counter()
            workers = [subprocess.Popen([sys.executable, "-m", "leadtap", "--config", str(config), "--log-level",
                                         "warning", "run"], stdout=subprocess.DEVNULL,
                                        stderr=(work / f"worker{w}.log").open("w"), env=env) for w in range(count)]
            try:
                done = 0
                while done < total:
                    time.sleep(0.2)
                    with engine.connect() as c:
                        done = c.execute(select(func.count()).select_from(LedgerEntry)).scalar()
                    print(f"\r{count} worker(s): {done}/{total}", end="", file=sys.stderr, flush=True)
                seconds = time.perf_counter() - started
            finally:
                for worker in workers:
                    worker.terminate()
                for worker in workers:
                    worker.wait(timeout=60)
                engine.dispose()
            rates[count] = total / seconds
            print(f"\r{count} worker(s): {total} messages in {seconds:.1f} s", file=sys.stderr)
            with admin.connect() as c:
                c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()
    print(f"messages:              {total} over {args.mailboxes} mailboxes, PostgreSQL")
    for count, rate in rates.items():
        print(f"{count} worker(s):           {rate:.0f} messages/s  (ratio to one: {rate / rates[min(rates)]:.2f})")
    print(f"machine:               {os.cpu_count()} cores, Python {sys.version.split()[0]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=50_000, help="messages (default 50,000)")
    parser.add_argument("--batch", type=int, default=100, help="ingest batch size")
    parser.add_argument("--sequential", action="store_true", help="parallel_parsing = false")
    parser.add_argument("--workers", help="e.g. 1,2: that many `leadtap run` processes, each in turn")
    parser.add_argument("--database", help="a PostgreSQL URL, with --workers")
    parser.add_argument("--mailboxes", type=int, default=4, help="with --workers (default 4)")
    parser.add_argument("--webhooks", type=int, default=0, metavar="N",
                        help="passes with no webhook and with N [[webhooks]] wanting lead.created, alternately "
                             "(what owing the events costs ingest; their endpoint refuses connections, so the "
                             "sends after each pass cost one attempt an endpoint)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="with --webhooks: rounds of four passes, two of each (default 2)")
    parser.add_argument("--workflow", action="store_true",
                        help="New has a workflow: each lead owes two steps (what owing them costs ingest)")
    args = parser.parse_args()
    if args.workers:
        if not args.database:
            parser.error("--workers needs --database (a PostgreSQL URL)")
        return run_workers(args)
    if args.webhooks:
        return compare_webhooks(args)
    work = Path(tempfile.mkdtemp(prefix="leadtap-bench-"))
    with Dovecot(tls=False) as server:
        fill_mailbox(server, args.n)
        config = write_config(work / "leadtap.toml", work / "bench.db", server, args)
        print("running one ingest pass ...", file=sys.stderr)
        seconds, largest_mb, tree_mb, summary = run_poll(config)
    print("parsing the same messages with mail-parser alone ...", file=sys.stderr)
    parse_rate = parse_only_rate(args.n)
    rate = args.n / seconds
    print(f"messages:              {args.n}{' (parallel_parsing = false)' if args.sequential else ''}"
          f"{' (New has a workflow of two steps)' if args.workflow else ''}")
    print(f"poll result:           {summary}")
    print(f"ingest pass:           {seconds:.1f} s, {rate:.0f} messages/s")
    print(f"peak memory, all:      {tree_mb:.0f} MB  (poll and its parsing process together, sampled every 50 ms)")
    print(f"peak memory, largest:  {largest_mb:.0f} MB  (ru_maxrss of the largest single process)")
    print(f"mail-parser alone:     {parse_rate:.0f} messages/s")
    print(f"ratio ingest/parse:    {rate / parse_rate:.2f}  (target >= 0.6)")
    print(f"machine:               {os.cpu_count()} cores, Python {sys.version.split()[0]}")


def write_config(path: Path, db: Path, server, args, webhooks: int = 0, extra: str = "") -> Path:
    path.write_text(CONFIG.format(template=TEMPLATE, db=db, port=server.port, password=server.password,
                                  batch=args.batch, parallel="false" if args.sequential else "true", extra=extra)
                    + (WORKFLOW if args.workflow else "")
                    + "".join(WEBHOOK.format(n=n) for n in range(webhooks)))
    os.environ["BENCH_WEBHOOK_SECRET"] = "whsec_" + "bGVhZHRhcC1iZW5jaC13ZWJob29rLXNlY3JldC0zMiE="
    subprocess.run([sys.executable, "-m", "leadtap", "--config", str(path), "--log-level", "error",
                    "db", "upgrade"], check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return path


def cpu_of_children() -> float:
    """Seconds of CPU (user and system) of the child processes waited for so far, and theirs."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def compare_webhooks(args) -> None:
    """Passes over the same messages, each into a fresh database, with no
    webhook and with N wanting lead.created, in the order ABBA a round (after
    one untimed pass that warms the caches): what owing the events costs
    ingest, as a ratio measured in one run."""
    rates: dict[int, list[float]] = {0: [], args.webhooks: []}
    cpu: dict[int, list[float]] = {0: [], args.webhooks: []}  # ms of CPU a message, every process of the poll
    with Dovecot(tls=False) as server:
        fill_mailbox(server, args.n)
        one_pass(server, args, 0)
        for round_ in range(args.rounds):
            order = (0, args.webhooks, args.webhooks, 0) if round_ % 2 == 0 else (args.webhooks, 0, 0, args.webhooks)
            for hooks in order:
                seconds, used = one_pass(server, args, hooks)
                rates[hooks].append(args.n / seconds)
                cpu[hooks].append(used / args.n * 1000)
                print(f"round {round_ + 1}, {hooks} webhooks: {args.n / seconds:.0f} messages/s, "
                      f"{cpu[hooks][-1]:.2f} ms of CPU a message", file=sys.stderr)
    none, some = (statistics.median(r) for r in rates.values())
    cpu_none, cpu_some = (statistics.median(c) for c in cpu.values())
    print(f"messages:              {args.n} a pass, {2 * args.rounds} passes each, ABBA, after a warm-up pass")
    print(f"no webhook:            {' '.join(f'{r:.0f}' for r in rates[0])} messages/s (median {none:.0f})")
    print(f"{args.webhooks} webhooks:            {' '.join(f'{r:.0f}' for r in rates[args.webhooks])} "
          f"messages/s (median {some:.0f})")
    print(f"ratio:                 {some / none:.2f}  (target >= 0.95; each lead owes lead.created to every endpoint)")
    print(f"CPU a message:         {cpu_none:.2f} ms against {cpu_some:.2f} ms with {args.webhooks} webhooks "
          f"(medians; the poll and its parsing process together)")
    print(f"machine:               {os.cpu_count()} cores, Python {sys.version.split()[0]}")


def one_pass(server, args, hooks: int) -> tuple[float, float]:
    """One poll of every message into a fresh database (removed after): its seconds and CPU seconds."""
    with tempfile.TemporaryDirectory(prefix="leadtap-bench-") as tmp:
        work = Path(tmp)
        config = write_config(work / "leadtap.toml", work / "bench.db", server, args, hooks,
                              extra="unread_only = false")  # every pass reads the same messages
        before = cpu_of_children()
        seconds, _, _, _ = run_poll(config)
        return seconds, cpu_of_children() - before

if __name__ == "__main__":
    main()
