"""Pure rules of reminders: when one falls due, business hours in a time zone."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from leadtap.core.config.load import ReminderRule, parse_business_hours
from leadtap.core.store.reminders import due_number
from leadtap.scheduler.render import describe_duration, one_line

START = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
RULE = ReminderRule(name="r", status="New", after=timedelta(days=2))
REPEATING = ReminderRule(name="r", status="New", after=timedelta(days=2), repeat_every=timedelta(days=1))


def test_nothing_is_due_before_the_rule_s_delay():
    assert due_number(START, START + timedelta(days=2) - timedelta(seconds=1), RULE) is None


def test_without_repeat_only_the_first_reminder_is_ever_due():
    assert due_number(START, START + timedelta(days=2), RULE) == 0
    assert due_number(START, START + timedelta(days=30), RULE) == 0


def test_with_repeat_every_the_next_rung_comes_that_long_after_the_last_one_sent():
    assert due_number(START, START + timedelta(days=2), REPEATING) == 0
    sent = {0: START + timedelta(days=2, hours=5)}  # the first went out late (business hours)
    assert due_number(START, START + timedelta(days=3, hours=5) - timedelta(seconds=1), REPEATING, sent) == 0
    assert due_number(START, START + timedelta(days=3, hours=5), REPEATING, sent) == 1
    # missed sweeps do not pile up, and the count is what was sent, not the time since the stay began
    assert due_number(START, START + timedelta(days=30), REPEATING, sent) == 1
    sent[1] = START + timedelta(days=29, hours=12)
    assert due_number(START, START + timedelta(days=30), REPEATING, sent) == 1
    assert due_number(START, START + timedelta(days=30, hours=12), REPEATING, sent) == 2


def test_a_rule_enabled_over_an_old_stay_starts_at_its_first_reminder():
    assert due_number(START - timedelta(days=365), START, REPEATING) == 0
    assert due_number(START - timedelta(days=365), START, REPEATING, {0: START}) == 0  # retried for the others
    assert due_number(START - timedelta(days=365), START + timedelta(days=1), REPEATING, {0: START}) == 1


def test_without_repeat_the_first_rung_stays_current():
    assert due_number(START, START + timedelta(days=30), RULE, {0: START + timedelta(days=2)}) == 0


VILNIUS = ZoneInfo("Europe/Vilnius")
HOURS = parse_business_hours("Mon-Fri 08:00-18:00")


@pytest.mark.parametrize(
    "utc, inside",
    [
        # Friday 23 Oct 2026, summer time (UTC+3): 05:30 UTC is 08:30 local.
        (datetime(2026, 10, 23, 5, 30, tzinfo=timezone.utc), True),
        # Sunday 25 Oct 2026: the clocks go back; a Sunday is never inside.
        (datetime(2026, 10, 25, 9, 0, tzinfo=timezone.utc), False),
        # Monday 26 Oct 2026, winter time (UTC+2): 05:30 UTC is 07:30 local, 06:30 UTC is 08:30.
        (datetime(2026, 10, 26, 5, 30, tzinfo=timezone.utc), False),
        (datetime(2026, 10, 26, 6, 30, tzinfo=timezone.utc), True),
        # 18:00 local is the end: 16:00 UTC in winter is outside, 15:59 inside.
        (datetime(2026, 10, 26, 16, 0, tzinfo=timezone.utc), False),
        (datetime(2026, 10, 26, 15, 59, tzinfo=timezone.utc), True),
    ],
)
def test_business_hours_are_read_in_the_configured_zone_across_a_dst_change(utc, inside):
    assert HOURS.contains(utc.astimezone(VILNIUS)) is inside


def test_several_spans_and_wrapping_weekday_ranges():
    hours = parse_business_hours("Sat-Mon 10:00-12:00, Wed 14:00-15:00")
    assert hours.contains(datetime(2026, 11, 29, 11, 0))  # Sunday
    assert hours.contains(datetime(2026, 11, 30, 11, 0))  # Monday
    assert not hours.contains(datetime(2026, 12, 1, 11, 0))  # Tuesday
    assert hours.contains(datetime(2026, 12, 2, 14, 30))  # Wednesday


@pytest.mark.parametrize("text", ["Mon-Fri", "Mon-Fri 18:00-08:00", "Funday 08:00-10:00", "Mon 25:00-26:00", ""])
def test_bad_business_hours_are_refused(text):
    with pytest.raises(ValueError):
        parse_business_hours(text)


def test_durations_read_like_a_person_would_say_them():
    assert describe_duration(timedelta(days=3, hours=2)) == "3 days"
    assert describe_duration(timedelta(days=1, hours=5)) == "1 day 5 h"
    assert describe_duration(timedelta(hours=2, minutes=5)) == "2 h 5 min"
    assert describe_duration(timedelta(minutes=7)) == "7 min"


def test_a_header_value_never_carries_a_line_break():
    assert one_line("Jo\r\nBcc: x@y\n") == "Jo Bcc: x@y"


# --- the [smtp] and [reminders] tables ------------------------------------------

from leadtap.core.config.load import load_config  # noqa: E402
from leadtap.core.errors import ConfigError  # noqa: E402

BASE = """
[[owners]]
email = "ana@example.com"
roles = ["sales"]

[smtp]
host = "127.0.0.1"
security = "plain"
from = "leadtap <crm@example.com>"
"""


def load(tmp_path, text: str, environ=None):
    path = tmp_path / "leadtap.toml"
    path.write_text(text)
    return load_config(path, environ or {})


def refused_key(tmp_path, text: str) -> str:
    with pytest.raises(ConfigError) as error:
        load(tmp_path, text)
    return error.value.key


def test_a_full_reminders_table_loads(tmp_path):
    config = load(tmp_path, BASE + """
[reminders]
sweep_every = "5m"
timezone = "Europe/Vilnius"
business_hours = "Mon-Fri 08:00-18:00"
digest = true
lead_url = "https://crm.example.com/leads/{id}"

[[reminders.rules]]
name = "new-untouched"
status = "New"
after = "2d"
repeat_every = "1d"
escalate_after = 3
escalate_to_role = "sales"
""")
    (rule,) = config.reminders.rules
    assert rule.after == timedelta(days=2) and rule.repeat_every == timedelta(days=1)
    assert config.reminders.sweep_every == timedelta(minutes=5) and config.reminders.digest
    assert config.smtp.port == 25 and config.smtp.sender == "leadtap <crm@example.com>"


@pytest.mark.parametrize(
    "extra, key",
    [
        ('[reminders]\ntimezone = "Mars/Olympus"\n', "reminders.timezone"),
        ('[reminders]\nlead_url = "https://crm/leads"\n', "reminders.lead_url"),
        ('[reminders]\nbusiness_hours = "weekdays"\n', "reminders.business_hours"),
        ('[[reminders.rules]]\nname = "r"\nstatus = "Lost"\nafter = "1d"\n', "reminders.rules[0].status"),
        ('[[reminders.rules]]\nname = "r"\nstatus = "Qualified"\nafter = "1d"\n', "reminders.rules[0].status"),
        ('[[reminders.rules]]\nname = "r"\nstatus = "New"\n', "reminders.rules[0].after"),
        ('[[reminders.rules]]\nname = "r"\nstatus = "New"\nafter = "1d"\nescalate_after = 2\n',
         "reminders.rules[0].escalate_to_role"),
        ('[[reminders.rules]]\nname = "r"\nstatus = "New"\nafter = "1d"\nescalate_after = 2\n'
         'escalate_to_role = "nobody"\n', "reminders.rules[0].escalate_to_role"),
        ('[[reminders.rules]]\nname = "r"\nstatus = "New"\nafter = "1d"\ntemplate = "../etc/passwd"\n',
         "reminders.rules[0].template"),
        ('[[reminders.rules]]\nname = "r"\nafter = "1d"\n', "reminders.rules[0].status"),
        ('[[reminders.rules]]\nname = "r"\nkind = "lead"\nstatus = "New"\nafter = "1d"\n', "reminders.rules[0].kind"),
        ('[[reminders.rules]]\nname = "r"\nkind = "task"\nstatus = "New"\nafter = "1d"\n',
         "reminders.rules[0].status"),
        ('[[reminders.rules]]\nname = "r"\nkind = "task"\nafter = "1d"\nreassign_after = 2\n',
         "reminders.rules[0].reassign_after"),
        ('[[reminders.rules]]\nname = "r"\nstatus = "New"\nafter = "1d"\nreassign_after = 0\n',
         "reminders.rules[0].reassign_after"),
        ('[[reminders.rules]]\nname = "r"\nstatus = "New"\nafter = "1d"\nreassign_after = 2\n',
         "reminders.rules[0].reassign_after"),
        ('[assignment]\nenabled = false\n[[reminders.rules]]\nname = "r"\nstatus = "New"\nafter = "1d"\n'
         'reassign_after = 1\n', "reminders.rules[0].reassign_after"),
        ('[[reminders.rules]]\nname = "r"\nstatus = "New"\nafter = "1d"\n'
         '[[reminders.rules]]\nname = "r"\nstatus = "New"\nafter = "2d"\n', "reminders.rules[1].name"),
    ],
)
def test_a_wrong_reminders_table_is_refused_naming_the_key(tmp_path, extra, key):
    assert refused_key(tmp_path, BASE + extra) == key


def test_a_task_rule_takes_the_task_overdue_template_and_a_status_rule_may_reassign(tmp_path):
    config = load(tmp_path, BASE + '[[reminders.rules]]\nname = "t"\nkind = "task"\nafter = "2h"\n'
                  '[[reminders.rules]]\nname = "s"\nstatus = "New"\nafter = "1d"\nrepeat_every = "1d"\n'
                  'reassign_after = 3\n')
    task, status = config.reminders.rules
    assert (task.kind, task.for_tasks, task.status, task.template) == ("task", True, None, "task_overdue")
    assert (status.kind, status.template, status.reassign_after) == ("status", "stale_lead", 3)


def test_rules_without_an_smtp_table_are_refused(tmp_path):
    text = '[[reminders.rules]]\nname = "r"\nstatus = "New"\nafter = "1d"\n'
    assert refused_key(tmp_path, text) == "smtp"


def test_plain_smtp_to_a_remote_host_is_refused(tmp_path):
    assert refused_key(tmp_path, BASE.replace("127.0.0.1", "smtp.example.com")) == "smtp.security"


def test_a_stay_starts_at_the_later_of_the_status_change_and_the_assignment():
    from leadtap.core.store.db import Lead
    from leadtap.core.store.reminders import stay_start

    changed, assigned = datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 5, tzinfo=timezone.utc)
    assert stay_start(Lead(status_changed_at=changed, assigned_at=None)) == changed
    assert stay_start(Lead(status_changed_at=changed, assigned_at=assigned)) == assigned
    assert stay_start(Lead(status_changed_at=assigned, assigned_at=changed)) == assigned
