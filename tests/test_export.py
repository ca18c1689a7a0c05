"""``leadtap leads export``: every lead streamed to CSV or JSON Lines, in a
stable column order, safe to open in a spreadsheet; on SQLite and
PostgreSQL. (Its rate and memory at a million leads: bench/export.py.)"""

from __future__ import annotations

import csv
import io
import json

from leadtap.cli.export import safe_cell
from tests.test_ingest import env  # noqa: F401  (the fixture)
from tests.test_pipelines import PARTNERS


def test_a_cell_a_spreadsheet_would_run_is_text():
    assert [safe_cell(v) for v in ("=SUM(A1)", "+1 555", "-2", "@cmd", "\tx", "Jo", None, 3, {"a": 1})] == [
        "'=SUM(A1)", "'+1 555", "'-2", "'@cmd", "'\tx", "Jo", "", "3", '{"a": 1}']


def entered(env, *people: tuple[str, ...]) -> None:
    for args in people:
        code, _, err = env.cli("leads", "add", *args)
        assert code == 0, err


def test_the_export_is_every_lead_in_a_stable_order_and_excel_safe(env, mailbox, tmp_path):
    env.configure(mailbox.section(), extra=PARTNERS + '[[leads.fields]]\nname = "tier"\n')
    env.upgrade()
    entered(env, ("--name", "Jo Smith", "--email", "jo@acme.test", "--field", "tier=gold"),
            ("--name", "=HYPERLINK(\"http://x\")", "--phone", "+1 555", "--pipeline", "Partners"))

    code, out, _ = env.cli("leads", "export")
    rows = list(csv.reader(io.StringIO(out)))
    assert code == 0 and rows[0][:6] == ["id", "name", "email", "phone", "company", "status"]
    assert rows[0][-1] == "fields.tier" and rows[1][-1] == "gold"
    assert rows[2][1] == "'=HYPERLINK(\"http://x\")" and rows[2][3] == "'+1 555" and rows[2][6] == "Partners"

    target = tmp_path / "leads.csv"
    code, _, err = env.cli("leads", "export", "--output", str(target), "--bom", "--pipeline", "Partners")
    assert code == 0 and "exported 1 lead to" in err
    assert target.read_bytes().startswith(b"\xef\xbb\xbfid,name")

    code, out, _ = env.cli("leads", "export", "--format", "jsonl", "--fields", "id,name,fields.tier")
    assert [json.loads(line) for line in out.splitlines()] == [
        {"id": 1, "name": "Jo Smith", "fields.tier": "gold"},
        {"id": 2, "name": "=HYPERLINK(\"http://x\")", "fields.tier": None}]


def test_the_export_filters_and_refuses_what_it_does_not_know(env, mailbox):
    env.configure(mailbox.section())
    env.upgrade()
    entered(env, ("--name", "Jo", "--phone", "1"), ("--name", "Kim", "--phone", "2", "--status", "Attempting"))

    code, out, _ = env.cli("leads", "export", "--status", "attempting", "--format", "jsonl", "--fields", "name")
    assert code == 0 and out == '{"name": "Kim"}\n'
    code, out, _ = env.cli("leads", "export", "--since", "2099-01-01")
    assert code == 0 and out.count("\n") == 1  # the header only
    for args, words in ((("--fields", "id,nope"), "unknown column nope"), (("--since", "yesterday"), "a day as"),
                        (("--status", "Gone"), "unknown status 'Gone'"), (("--pipeline", "x"), "unknown pipeline")):
        code, _, err = env.cli("leads", "export", *args)
        assert code == 2 and words in err, err


def test_more_cells_that_may_be_formulas_are_text_and_jsonl_keeps_one_line_a_lead():
    from leadtap.cli.export import json_line

    assert [safe_cell(v) for v in (" =1+1", "\n=1+1", "\uff1d1+1", "|cmd", "\r\n", "a=b")] == [
        "' =1+1", "'\n=1+1", "'\uff1d1+1", "'|cmd", "'\r\n", "a=b"]
    line = json_line({"message": "one\u2028two\x85three"})
    assert line.count("\n") == 1 and len(line.splitlines()) == 1 and json.loads(line)["message"] == "one\u2028two\x85three"


def test_an_export_leaves_the_database_writable_and_an_earlier_file_whole(env, mailbox, tmp_path):
    from sqlalchemy import text

    from leadtap.bootstrap import build_app

    env.configure(mailbox.section())
    env.upgrade()
    entered(env, ("--name", "Jo", "--phone", "1"))
    app, other = build_app(str(env.path)), build_app(str(env.path))
    with app.db.reading() as session:  # on PostgreSQL a reader never holds a write lock: SQLite is the test
        assert session.execute(text("select count(*) from leads")).scalar() == 1
        with other.db.transaction() as writer:  # would wait 30 s, then fail, under a write lock
            writer.execute(text("update leads set company = 'ACME' where id = 1"))
    with app.db.reading() as session:
        assert session.execute(text("select company from leads")).scalar() == "ACME"
    app.close()
    other.close()

    target = tmp_path / "leads.csv"
    target.write_text("yesterday's export\n")
    code, _, err = env.cli("leads", "export", "--status", "Gone", "--output", str(target))
    assert code == 2 and target.read_text() == "yesterday's export\n"
    code, _, err = env.cli("leads", "export", "--output", str(tmp_path / "no-such-dir" / "leads.csv"))
    assert code == 1 and "cannot write" in err and "No such file or directory" in err


def test_leads_list_answers_at_once_while_another_process_writes(env, mailbox):
    """The schema check and the listing only read: on SQLite they begin
    deferred, so a worker's open write transaction never makes them wait."""
    import time

    from sqlalchemy import text

    from leadtap.bootstrap import build_app

    env.configure(mailbox.section())
    env.upgrade()
    entered(env, ("--name", "Jo", "--phone", "1"))
    writer_app = build_app(str(env.path))
    try:
        with writer_app.db.transaction() as writer:  # holds SQLite's write lock until it ends
            writer.execute(text("update leads set company = 'ACME' where id = 1"))
            started = time.monotonic()
            code, out, err = env.cli("leads", "list", "--owner", "ana@example.com", "--status", "new")
            assert code == 0 and "(1 lead)" in out, err
            assert time.monotonic() - started < 5  # under the lock it waited 30 s, then failed
    finally:
        writer_app.close()
