"""Webhooks: the events a lead and its deal go through, POSTed to
``[[webhooks]]`` endpoints, signed as the Standard Webhooks specification
says — checked here with that specification's reference library — owed in
the transaction that makes them and sent through the outbox: retried with
the same id, given up past their horizon, an endpoint that answers 410
disabled, a lead's events in order, each event once under two workers.

The receiver is a real HTTP server on loopback, started by the tests."""

from __future__ import annotations

import base64
import json
import re
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import pytest
from sqlalchemy import update
from standardwebhooks.webhooks import Webhook

from leadtap.bootstrap import build_app
from leadtap.core.rules.webhooks import secret_bytes, signature, webhook_id
from leadtap.core.store.db import WebhookDelivery
from leadtap.core.use_cases.views import show_lead
from tests.helpers import ROOT, enquiry, run_leadtap, write_config
from tests.test_config import config, load, refused
from tests.test_ingest import Env, env  # noqa: F401  (the fixture)
from tests.test_workers import run_at_once
from tests.test_workflows import start

SECRET = "whsec_" + base64.b64encode(b"leadtap-test-webhook-secret-32b!").decode()
SCHEMA = json.loads((ROOT / "docs" / "webhook-event.schema.json").read_text())


class Receiver:
    """An HTTP server that keeps what it is sent and answers as told (``answers``: statuses in turn, then 200)."""

    def __init__(self):
        self.received: list[tuple[dict, bytes]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"no")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        """What came, each verified with the Standard Webhooks reference library
        and checked against the documented JSON Schema."""
        verifier = Webhook(SECRET)
        events = [verifier.verify(body, headers) for headers, body in self.received]
        for event in events:
            jsonschema.validate(event, SCHEMA, format_checker=jsonschema.FormatChecker())
        return events

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def hooks(url: str, secret_file, events=("lead.created", "lead.status_changed", "lead.assigned", "deal.stage_changed",
                                         "deal.won")) -> str:
    listed = ", ".join(f'"{e}"' for e in events)
    return f'[[webhooks]]\nname = "crm"\nurl = "{url}"\nevents = [{listed}]\nsecret_file = "{secret_file}"\n'


# --- the rules -----------------------------------------------------------------------


def test_the_signature_is_the_standard_webhooks_one():
    body = b'{"type":"lead.created"}'
    stamp = int(datetime.now(timezone.utc).timestamp())
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(stamp),
               "webhook-signature": signature(secret_bytes(SECRET), "msg_1", stamp, body)}

    assert Webhook(SECRET).verify(body, headers) == {"type": "lead.created"}
    with pytest.raises(Exception):
        Webhook(SECRET).verify(body + b" ", headers)


def test_a_webhook_id_is_unique_and_later_ones_sort_after_earlier_ones():
    first = datetime(2026, 12, 6, 10, 0, tzinfo=timezone.utc)
    same = [webhook_id(first) for _ in range(1000)]
    later = webhook_id(first + timedelta(milliseconds=1))

    assert len(set(same)) == 1000 and all(re.fullmatch(r"msg_[0-9a-f]{32}", each) for each in same)
    assert max(same) < later < webhook_id(first + timedelta(days=3650))
    exact = datetime(1978, 8, 31, 21, 42, 17, 923000, tzinfo=timezone.utc)  # as a float, one millisecond low
    assert webhook_id(exact)[4:16] == f"{273447737923:012x}"
    assert re.fullmatch(r"msg_0{12}[0-9a-f]{20}", webhook_id(datetime(1969, 7, 20, tzinfo=timezone.utc)))


def test_retry_later_refuses_to_set_what_is_no_column_or_its_own():
    from leadtap.core.use_cases.webhooks import OUTBOX
    now = datetime(2026, 12, 6, tzinfo=timezone.utc)

    with pytest.raises(TypeError, match="anwser is no column"):
        OUTBOX.retry_later(None, 1, "token", now, "500", anwser="500")
    with pytest.raises(TypeError, match="state is no column"):
        OUTBOX.retry_later(None, 1, "token", now, "500", state="sent")


def test_a_webhook_reads_from_the_config_and_bad_ones_are_refused(tmp_path):
    (tmp_path / "hook.secret").write_text(SECRET)
    loaded = load(tmp_path, config(extra=hooks("https://hooks.example.com/x", tmp_path / "hook.secret")))
    (hook,) = loaded.webhooks
    assert hook.name == "crm" and hook.wants("lead.created") and not hook.wants("deal.lost")
    assert hook.timeout == timedelta(seconds=10) and hook.horizon == timedelta(days=3)
    assert secret_bytes(hook.secret.reveal()) == b"leadtap-test-webhook-secret-32b!"

    for url, words in (("http://hooks.example.com/x", "http:// only to this machine"),
                       ("https://user:pw@hooks.example.com/x", "no credentials in the URL"),
                       ("ftp://hooks.example.com/x", "an https:// URL is expected")):
        assert words in str(refused(tmp_path, config(extra=hooks(url, tmp_path / "hook.secret"))))
    error = refused(tmp_path, config(extra=hooks("https://h.example.com", tmp_path / "x", events=("lead.won",))))
    assert "webhooks[0].events: unknown event 'lead.won'" in str(error)
    (tmp_path / "bad.secret").write_text("not-a-whsec-secret")
    loaded = load(tmp_path, config(extra=hooks("https://h.example.com", tmp_path / "bad.secret")))
    with pytest.raises(Exception, match="webhooks\\[0\\].secret_file: the secret is 0 bytes"):
        loaded.webhooks[0].secret.reveal()


# --- against a receiver --------------------------------------------------------------


@pytest.fixture
def hooked(env, mailbox, receiver, tmp_path):
    (tmp_path / "hook.secret").write_text(SECRET)
    mailbox.append(enquiry(name="Jo Smith", email="jo@acme.test", company="ACME"))
    env.configure(mailbox.section(), extra=hooks(receiver.url, tmp_path / "hook.secret"))
    env.upgrade()
    return env


def send(env: Env, at: datetime):
    app = build_app(str(env.path))
    try:
        return app.webhook_sender(clock=lambda: at).run()
    finally:
        app.close()


def test_a_new_lead_and_its_changes_reach_the_endpoint_signed_and_in_order(hooked, receiver):
    code, out, _ = hooked.cli("poll")
    assert code == 0 and "webhooks: 1 delivered" in out
    assert hooked.cli("leads", "set", "1", "--status", "Attempting")[0] == 0
    assert hooked.cli("leads", "assign", "1", "ben@example.com")[0] == 0
    assert hooked.cli("opportunities", "set", "1", "--stage", "Won", "--field", "amount=1200",
                      "--field", "close_date=2026-12-31")[0] == 0

    events = receiver.events()
    assert [e["type"] for e in events] == ["lead.created", "lead.status_changed", "lead.assigned",
                                           "deal.stage_changed", "deal.won"]
    created = events[0]
    assert created["version"] == 1 and created["data"]["lead"]["name"] == "Jo Smith"
    assert created["data"]["lead"]["opportunity"]["stage"] == "Discovery" and created["data"]["change"] == {"by": "mail"}
    assert events[1]["data"]["change"]["to"] == "Attempting" and events[2]["data"]["change"]["to"] == "ben@example.com"
    assert events[4]["data"]["lead"]["opportunity"]["stage"] == "Won"
    assert len({headers["webhook-id"] for headers, _ in receiver.received}) == 5


def test_a_mail_leads_created_event_says_the_lead_as_leads_show_reads_it_back(hooked, mailbox, receiver):
    """The batch's events are made from the rows it writes: they must say
    what the database then holds (times in UTC, the deal with its id)."""
    offset = enquiry(name="Ona Petraitė", email="ona@uab.test", company="UAB", subject="Kaina",
                     message="Line one\nline two").replace(b"Date: Fri, 20 Nov 2026 09:30:00 +0000",
                                                            b"Date: Fri, 20 Nov 2026 11:30:00 +0200")
    assert b"+0200" in offset
    mailbox.append(offset)
    mailbox.append(enquiry(name="Ona", email="ona@uab.test", subject="Kaina, vėl"))  # joins lead 2, same batch
    assert hooked.cli("poll")[0] == 0

    app = build_app(str(hooked.path))
    try:
        with app.db.transaction() as session:
            stored = {lead_id: show_lead(session, lead_id) for lead_id in (1, 2)}
    finally:
        app.close()
    events = receiver.events()
    assert [e["type"] for e in events] == ["lead.created", "lead.created"]
    for event in events:
        lead = event["data"]["lead"]
        kept = {key: value for key, value in stored[lead["id"]].items() if key not in ("thread", "tasks", "activities")}
        assert lead == json.loads(json.dumps(kept))
        assert lead["opportunity"]["id"] and lead["owner"]
    assert stored[2]["received_at"] == "2026-11-20T09:30:00+00:00" and stored[2]["name"] == "Ona Petraitė"
    assert stored[2]["last_activity_at"] and not stored[1]["last_activity_at"]


def test_webhooks_list_pages_and_filters_by_endpoint_and_lead(hooked, receiver, mailbox):
    mailbox.append(enquiry(name="Ona", email="ona@uab.test"))
    assert hooked.cli("poll")[0] == 0
    assert hooked.cli("leads", "set", "1", "--status", "Attempting")[0] == 0

    code, out, _ = hooked.cli("webhooks", "list", "--limit", "2")
    lines = out.splitlines()
    assert code == 0 and [line.split()[3:5] for line in lines[:2]] == [["lead", "1"], ["lead", "2"]]
    assert lines[2] == f"(the latest 2; older ones: --before {lines[1].split()[0]})"
    code, out, _ = hooked.cli("webhooks", "list", "--before", lines[1].split()[0])
    assert code == 0 and [line.split()[2:5] for line in out.splitlines()] == [["lead.created", "lead", "1"]]
    code, out, _ = hooked.cli("webhooks", "list", "--lead", "1", "--endpoint", "crm")
    assert code == 0 and len(out.splitlines()) == 2 and "lead 2" not in out
    code, _, err = hooked.cli("webhooks", "list", "--endpoint", "slack")
    assert code == 2 and "no deliveries to 'slack'; the [[webhooks]] are crm" in err
    hooked.path.write_text(hooked.path.read_text().replace('name = "crm"', 'name = "crm2"'))
    code, out, _ = hooked.cli("webhooks", "list", "--endpoint", "crm", "--failed")  # removed, its rows kept
    assert code == 0 and out == "no webhook deliveries given up\n"
    assert len(hooked.cli("webhooks", "list", "--endpoint", "crm")[1].splitlines()) == 3
    with pytest.raises(SystemExit):
        hooked.cli("webhooks", "list", "--limit", "0")


def test_a_failed_delivery_is_retried_with_the_same_id_and_given_up_past_its_horizon(hooked, receiver):
    receiver.answers = [500, 503]
    hooked.poll()  # 500: pending again
    now = datetime.now(timezone.utc)
    assert send(hooked, now).sent == 0  # its backoff has not run out
    report = send(hooked, now + timedelta(minutes=3))  # 503
    assert (report.sent, report.retry) == (0, 1)
    assert send(hooked, now + timedelta(minutes=10)).sent == 1
    ids = [headers["webhook-id"] for headers, _ in receiver.received]
    assert len(ids) == 3 and len(set(ids)) == 1

    receiver.answers = [500, 500]
    hooked.cli("leads", "set", "1", "--status", "Attempting")  # sent at once: 500
    report = send(hooked, now + timedelta(days=4))  # 500 again, past the 3-day horizon of an event made now
    assert report.failed == 1
    code, out, _ = hooked.cli("webhooks", "list", "--failed")
    assert "lead.status_changed  lead 1  failed" in out and "gave up after" in out
    code, out, _ = hooked.cli("webhooks", "retry", "--all")
    assert code == 0 and "1 delivery owed again" in out and "webhooks: 1 delivered" in out


def test_an_endpoint_that_answers_410_is_disabled(hooked, receiver):
    receiver.answers = [410]
    hooked.poll()
    hooked.cli("leads", "set", "1", "--status", "Attempting")

    assert len(receiver.received) == 1  # nothing more goes to it
    code, out, _ = hooked.cli("webhooks", "list")
    assert "endpoint crm disabled" in out and "HTTP 410" in out


def test_a_leads_later_event_waits_for_its_earlier_one(hooked, receiver):
    receiver.answers = [500]
    hooked.poll()  # lead.created: refused for now
    hooked.cli("leads", "set", "1", "--status", "Attempting")  # its status change waits behind it
    assert len(receiver.received) == 1

    report = send(hooked, datetime.now(timezone.utc) + timedelta(minutes=5))

    assert report.sent == 2
    assert [e["type"] for e in receiver.events()] == ["lead.created", "lead.created", "lead.status_changed"]


def test_webhooks_test_sends_a_signed_ping(hooked, receiver):
    code, out, _ = hooked.cli("webhooks", "test", "crm")

    assert code == 0 and "crm (http://127.0.0.1" in out and "sent, HTTP 200: ok" in out
    assert receiver.events()[0]["type"] == "ping"
    code, _, _ = hooked.cli("webhooks", "test", "nope")
    assert code == 2


def test_two_workers_deliver_each_event_once(tmp_path, postgres_url, mailbox, receiver):
    (tmp_path / "hook.secret").write_text(SECRET)
    for n in range(30):
        mailbox.append(enquiry(name=f"Person {n}", email=f"p{n}@client.test"))
    path = write_config(tmp_path / "leadtap.toml", postgres_url, mailbox.section(),
                        extra="[ingest]\nbatch_size = 5\n" + hooks(receiver.url, tmp_path / "hook.secret"))
    assert run_leadtap("db", "upgrade", config=path).returncode == 0
    assert run_leadtap("poll", config=path).returncode == 0
    assert len(receiver.received) == 30
    receiver.received.clear()
    app = build_app(str(path))
    with app.db.transaction() as session:  # every event owed again, as if never sent
        session.execute(update(WebhookDelivery).values(state="pending", sent_at=None))
    app.close()

    results = run_at_once(start(path, "notify"), start(path, "notify"))

    assert [code for code, _, _ in results] == [0, 0], results
    ids = [headers["webhook-id"] for headers, _ in receiver.received]
    assert len(ids) == 30 and len(set(ids)) == 30
    assert {json.loads(body)["type"] for _, body in receiver.received} == {"lead.created"}


def test_check_reaches_each_endpoint_by_head_or_by_a_signed_ping(hooked, receiver, tmp_path):
    code, out, _ = hooked.cli("check")
    assert f"ok    webhook crm: {receiver.url} answers (HEAD: HTTP 501)" in out  # the test receiver takes POST only

    ping = hooks(receiver.url, tmp_path / "hook.secret") + 'check = "ping"\n'
    hooked.configure(*hooked.sections, extra=ping)
    code, out, _ = hooked.cli("check")
    assert f"ok    webhook crm: {receiver.url} took a signed ping (HTTP 200: ok)" in out
    assert receiver.events()[-1]["type"] == "ping"

    hooked.configure(*hooked.sections, extra=hooks("http://127.0.0.1:9/hooks", tmp_path / "hook.secret"))
    code, out, _ = hooked.cli("check")
    assert code == 1 and "FAIL  webhook crm: http://127.0.0.1:9/hooks: ConnectionError" in out


def test_the_metrics_count_deliveries_by_endpoint_and_outcome(hooked, receiver):
    from leadtap.scheduler.metrics import Metrics
    from leadtap.scheduler.notifications import SendReport

    receiver.answers = [500, 500]
    hooked.poll()  # refused for now
    metrics = Metrics()
    metrics.sent(SendReport(webhooks=send(hooked, datetime.now(timezone.utc) + timedelta(minutes=5))))

    sample = metrics.registry.get_sample_value
    assert sample("leadtap_webhook_deliveries_total", {"endpoint": "crm", "outcome": "retried"}) == 1
    assert sample("leadtap_webhook_duration_seconds_count", {"endpoint": "crm"}) == 1
    assert sample("leadtap_webhook_oldest_undelivered_seconds") >= 300


EVENT = {"type": "lead.created", "timestamp": "2026-12-06T10:00:00+00:00", "version": 1,
         "data": {"lead": {"id": 7, "name": "Jo <b>Smith</b>", "company": "ACME & Co", "email": "jo@acme.test",
                           "source": "Website", "status": "New", "owner": "ana@example.com",
                           "opportunity": {"stage": "Discovery"},
                           "message": "Line 1\nLine 2\nLine 3\nLine 4\nLine 5\nLine 6"},
                  "change": {"by": "mail"}}}


def test_a_slack_message_and_a_teams_card_say_the_lead_in_a_few_lines():
    from leadtap.core.rules.webhooks import formatted

    slack = formatted("slack", EVENT, "https://crm.example.com/leads/7")
    assert slack["text"] == "New lead: #7 Jo <b>Smith</b>"
    fields = {f["text"] for f in slack["blocks"][1]["fields"]}
    assert "*Company*\nACME &amp; Co" in fields and "*Owner*\nana@example.com" in fields
    assert slack["blocks"][2]["text"]["text"] == "Line 1\nLine 2\nLine 3\nLine 4\nLine 5"  # the first five lines
    assert slack["blocks"][3]["elements"][0]["url"] == "https://crm.example.com/leads/7"

    card = formatted("teams", EVENT, None)["attachments"][0]
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    facts = card["content"]["body"][1]["facts"]
    assert {"title": "Deal", "value": "Discovery"} in facts and "actions" not in card["content"]
    assert formatted("json", EVENT, None) is EVENT


def test_the_schema_refuses_what_is_not_an_event():
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**EVENT, "type": "lead.won"}, SCHEMA)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**EVENT, "data": {"change": {"by": "mail"}}}, SCHEMA)


def test_a_slack_endpoint_gets_block_kit(env, mailbox, receiver, tmp_path):
    (tmp_path / "hook.secret").write_text(SECRET)
    mailbox.append(enquiry(name="Jo Smith", email="jo@acme.test", company="ACME"))
    env.configure(mailbox.section(), extra=hooks(receiver.url, tmp_path / "hook.secret", events=("lead.created",))
                  + 'format = "slack"\n[reminders]\nlead_url = "https://crm.example.com/leads/{id}"\n')
    env.upgrade()

    assert env.poll() == 0

    (headers, body) = receiver.received[0]
    message = json.loads(body)
    assert message["text"] == "New lead: #1 Jo Smith" and message["blocks"][0]["type"] == "header"
    assert message["blocks"][-1]["elements"][0]["url"] == "https://crm.example.com/leads/1"
    assert headers["webhook-id"].startswith("msg_")


# --- what a review found ------------------------------------------------------------------


class Dribbler(Receiver):
    """A receiver that answers one byte at a time, slowly, for ever."""

    def __init__(self):
        super().__init__()
        self.server.shutdown()
        self.server.server_close()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append(({}, b""))
                self.send_response(200)
                self.end_headers()
                try:
                    for _ in range(100):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        import time
                        time.sleep(0.3)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_post_ends_within_its_timeout_however_slowly_a_receiver_answers():
    import time

    from leadtap.scheduler.webhooks import post

    dribbler = Dribbler()
    try:
        started = time.monotonic()
        answer = post(dribbler.url, b"{}", {"content-type": "application/json"}, 1.0)
        assert time.monotonic() - started < 2.5 and answer.status == 200 and len(answer.said) < 10
    finally:
        dribbler.close()


def test_an_endpoint_that_fails_costs_one_attempt_a_run_and_a_note_waits_for_nothing(env, mailbox, receiver,
                                                                                     tmp_path):
    (tmp_path / "hook.secret").write_text(SECRET)
    for n in range(4):
        mailbox.append(enquiry(name=f"Person {n}", email=f"p{n}@client.test"))
    env.configure(mailbox.section(), extra=hooks(receiver.url, tmp_path / "hook.secret"))
    env.upgrade()
    receiver.answers = [500] * 10

    code, out, _ = env.cli("poll")

    assert "webhooks: 0 delivered, 1 to retry" in out and len(receiver.received) == 1  # the other 3 wait, untried
    code, out, _ = env.cli("leads", "note", "2", "called back")
    assert code == 0 and "webhooks" not in out  # a note is no event: nothing is sent
    code, _, _ = env.cli("notify")
    assert code == 1  # a delivery refused says so in the exit code


def test_cause_goes_before_effect_and_a_follow_up_lead_is_announced(env, mailbox, receiver, tmp_path):
    (tmp_path / "hook.secret").write_text(SECRET)
    mailbox.append(enquiry(name="Jo Smith", email="jo@acme.test"))
    env.configure(mailbox.section(), extra=hooks(receiver.url, tmp_path / "hook.secret", events=(
        "lead.created", "lead.status_changed", "deal.stage_changed", "deal.lost")) + (
        '[pipeline]\ndisqualified = "Disqualified"\ndisqualify_reasons = ["Bad timing", "Other"]\n'
        'follow_up = { reasons = ["Bad timing"], after = "30d" }\n'))
    env.upgrade()
    env.poll()

    assert env.cli("leads", "set", "1", "--status", "Disqualified", "--reason", "Bad timing")[0] == 0

    events = receiver.events()
    assert [(e["type"], e["data"]["lead"]["id"]) for e in events] == [
        ("lead.created", 1), ("lead.status_changed", 1), ("deal.stage_changed", 1), ("deal.lost", 1),
        ("lead.created", 2)]
    assert events[1]["data"]["lead"]["last_activity_at"] is not None
    assert events[4]["data"]["change"] == {"by": "follow-up of lead 1"}


def test_retry_keeps_order_and_never_posts_to_a_disabled_endpoint(hooked, receiver):
    receiver.answers = [500, 500]
    hooked.poll()
    hooked.cli("leads", "set", "1", "--status", "Attempting")
    send(hooked, datetime.now(timezone.utc) + timedelta(days=4))  # lead.created given up; then its status change
    send(hooked, datetime.now(timezone.utc) + timedelta(days=4, minutes=10))
    assert [e["type"] for e in receiver.events()][-1] == "lead.status_changed"

    code, out, _ = hooked.cli("webhooks", "retry", "--all")
    assert code == 1 and "nothing to retry" in out  # old news after new is not sent

    receiver.answers = [410]
    hooked.cli("leads", "set", "1", "--status", "Contacted")  # 410: disabled
    sent = len(receiver.received)
    code, out, _ = hooked.cli("webhooks", "retry", "--all")
    assert len(receiver.received) == sent and "webhooks: 0 delivered" in out


def test_http_to_this_machine_takes_no_proxy_from_the_environment(hooked, receiver, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")

    code, out, _ = hooked.cli("poll")

    assert "webhooks: 1 delivered" in out and len(receiver.received) == 1


def test_check_reads_the_webhook_secret_even_unreached(hooked, receiver, tmp_path):
    (tmp_path / "short.secret").write_text("whsec_" + base64.b64encode(b"short").decode())
    hooked.configure(*hooked.sections, extra=hooks(receiver.url, tmp_path / "short.secret") + 'check = "none"\n')

    code, out, _ = hooked.cli("check")

    assert code == 1 and "FAIL  webhook crm:" in out and "the secret is 5 bytes; at least 24" in out


def test_an_https_endpoint_is_verified_against_its_ca(hooked, receiver, tmp_path):
    import ssl

    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    url = receiver.url.replace("http://", "https://")
    config = hooks(url, tmp_path / "hook.secret")

    hooked.configure(*hooked.sections, extra=config)  # the system's CAs do not know this one
    code, out, _ = hooked.cli("poll")
    assert "webhooks: 0 delivered, 1 to retry" in out and "CERTIFICATE_VERIFY_FAILED" in hooked.cli(
        "webhooks", "list")[1]

    hooked.configure(*hooked.sections, extra=config + f'ca_file = "{tmp_path / "ca.pem"}"\n')
    report = send(hooked, datetime.now(timezone.utc) + timedelta(minutes=5))
    assert report.sent == 1 and receiver.events()[0]["type"] == "lead.created"


def test_a_delivery_whose_sender_died_is_sent_again_with_its_id(hooked, receiver):
    receiver.answers = [500]
    hooked.poll()
    app = build_app(str(hooked.path))
    with app.db.transaction() as session:  # as a worker killed mid-POST leaves it
        row = session.get(WebhookDelivery, 1)
        row.state, row.token, row.claimed_at = "claimed", "dead", datetime.now(timezone.utc) - timedelta(hours=1)
        first_id = row.webhook_id
    app.close()

    assert send(hooked, datetime.now(timezone.utc)).sent == 1  # its claim's lease ran out: taken over

    assert [headers["webhook-id"] for headers, _ in receiver.received] == [first_id, first_id]


def test_a_receiver_that_is_down_loses_nothing(hooked, receiver, tmp_path):
    hooked.configure(*hooked.sections, extra=hooks("http://127.0.0.1:9/hooks", tmp_path / "hook.secret"))
    code, out, _ = hooked.cli("poll")
    assert code == 0 and "webhooks: 0 delivered, 1 to retry" in out
    assert "ConnectionError" in hooked.cli("webhooks", "list")[1]

    hooked.configure(*hooked.sections, extra=hooks(receiver.url, tmp_path / "hook.secret"))  # it is back
    assert send(hooked, datetime.now(timezone.utc) + timedelta(minutes=5)).sent == 1
    assert receiver.events()[0]["data"]["lead"]["name"] == "Jo Smith"
