"""Extraction templates (ingest.extract): the rules a template follows, and how
the lead is chosen from a message's templates. No servers needed."""

from __future__ import annotations

from datetime import datetime, timezone
from email.message import EmailMessage

import pytest

from leadtap.core.config.load import TemplateConfig
from leadtap.core.errors import TemplateError
from leadtap.core.rules.model import Address, IncomingMessage
from leadtap.ingest.extract import BoundTemplate, compile_template, extract_lead
from leadtap.ingest.parse import parse_message
from tests.helpers import CONTACT_FORM, FIXTURES, dedent


def message(
    text: str,
    sender: Address | None = Address("Website", "noreply@forms.example.com"),
    reply_to: Address | None = None,
    subject: str = "New enquiry",
) -> IncomingMessage:
    return IncomingMessage(
        identity="id-" + subject,
        message_id="<m@example.com>",
        sender=sender,
        reply_to=reply_to,
        subject=subject,
        date=datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc),
        text=text,
    )


def bound(name: str, body: str, from_glob: str | None = None, subject_glob: str | None = None) -> BoundTemplate:
    config = TemplateConfig(name=name, body=body, from_glob=from_glob, subject_glob=subject_glob)
    return BoundTemplate(config, compile_template(name, body))


FORM_BODY = dedent(
    """
    Name: Jo Smith
    Email: jo@acme.test
    Phone: +370 600 00000
    Company: ACME
    Message: Please send a quote.
    """
)


# --- matching lines ------------------------------------------------------------


def test_the_contact_form_template_extracts_every_field_of_a_form_notification():
    found = compile_template("contact-form", CONTACT_FORM).extract(FORM_BODY)

    assert found.matched
    assert found.fields == {
        "name": "Jo Smith",
        "email": "jo@acme.test",
        "phone": "+370 600 00000",
        "company": "ACME",
        "message": "Please send a quote.",
    }


def test_each_template_line_is_matched_on_its_own_in_any_order_in_the_body():
    template = compile_template("t", "Name: {{ name }}\nEmail: {{ email }}\nCompany: {{ company }}")
    body = dedent(
        """
        Thank you for your submission.
        Company: ACME
        Some unrelated line
        Email: jo@acme.test

        Name: Jo Smith
        Footer text
        """
    )

    found = template.extract(body)

    assert found.matched
    assert found.fields == {"name": "Jo Smith", "email": "jo@acme.test", "company": "ACME"}


def test_a_template_line_matches_a_whole_body_line_not_a_line_that_only_contains_it():
    template = compile_template("t", "Name: {{ name }}")

    found = template.extract("Company name: ACME\nName: Jo Smith")

    assert found.fields == {"name": "Jo Smith"}


def test_literal_text_matches_case_insensitively():
    template = compile_template("t", "Full Name: {{ name }}\nE-Mail Address: {{ email }}")

    found = template.extract("FULL NAME: Jo Smith\ne-mail address: jo@acme.test")

    assert found.matched
    assert found.fields == {"name": "Jo Smith", "email": "jo@acme.test"}


def test_the_value_keeps_its_own_case():
    found = compile_template("t", "Name: {{ name }}").extract("name: Jo McSMITH")

    assert found.fields == {"name": "Jo McSMITH"}


def test_a_run_of_whitespace_in_the_template_matches_any_run_of_whitespace_in_the_body():
    template = compile_template("t", "Full name:   {{ name }}\nYour e-mail  address: {{ email }}")

    found = template.extract("  Full \t name:Jo Smith\nYour\te-mail address:\t\t jo@acme.test")

    assert found.matched
    assert found.fields == {"name": "Jo Smith", "email": "jo@acme.test"}


def test_whitespace_in_the_template_does_not_match_where_the_body_has_none():
    found = compile_template("t", "Full name: {{ name }}").extract("Fullname: Jo Smith")

    assert not found.matched
    assert found.missing == ("name",)


def test_a_no_break_space_in_the_body_counts_as_whitespace():
    found = compile_template("t", "Full name: {{ name }}").extract("Full\u00a0name: Jo Smith")

    assert found.fields == {"name": "Jo Smith"}


# --- values ----------------------------------------------------------------------


def test_a_value_runs_to_the_end_of_its_line_and_is_trimmed():
    found = compile_template("t", "Name: {{ name }}").extract("Name:    Jo  Smith   \t\nNext line")

    assert found.fields == {"name": "Jo  Smith"}


def test_a_value_runs_to_the_literal_text_that_follows_it_on_the_same_line():
    template = compile_template("t", "Name: {{ name }} (Company: {{ company }})")

    found = template.extract("Name:  Jo Smith   (company:  ACME Ltd )")

    assert found.fields == {"name": "Jo Smith", "company": "ACME Ltd"}


def test_a_value_followed_by_literal_text_does_not_match_a_line_without_that_text():
    found = compile_template("t", "Name: {{ name }} (Company: {{ company }})").extract("Name: Jo Smith")

    assert not found.matched
    assert set(found.missing) == {"name", "company"}


# --- optional and required ---------------------------------------------------------


def test_an_optional_field_may_be_missing():
    template = compile_template("t", "Name: {{ name }}\nPhone: {{ phone | optional }}")

    found = template.extract("Name: Jo Smith")

    assert found.matched
    assert found.missing == ()
    assert found.fields == {"name": "Jo Smith"}


def test_an_optional_field_is_extracted_when_present():
    template = compile_template("t", "Name: {{ name }}\nPhone: {{ phone | optional }}")

    found = template.extract("Phone: 555 123\nName: Jo Smith")

    assert found.fields == {"name": "Jo Smith", "phone": "555 123"}


def test_a_template_whose_required_fields_are_not_all_found_does_not_match_and_lists_them():
    found = compile_template("contact-form", CONTACT_FORM).extract("Phone: 555 123\nCompany: ACME\nHello there")

    assert not found.matched
    assert found.missing == ("name", "email", "message")
    assert found.template == "contact-form"


def test_a_required_field_with_an_empty_value_counts_as_missing():
    found = compile_template("t", "Name: {{ name }}\nEmail: {{ email }}").extract("Name: Jo\nEmail:   ")

    assert not found.matched
    assert found.missing == ("email",)


# --- multiline ---------------------------------------------------------------------


def test_a_multiline_value_runs_until_the_next_template_line():
    template = compile_template("t", "Message: {{ message | multiline }}\nName: {{ name }}")
    body = "Message: Hello,\nwe need 40 chairs.\n\n  Delivery in May.\nName: Jo Smith\nMore text"

    found = template.extract(body)

    assert found.fields == {"message": "Hello,\nwe need 40 chairs.\n\n  Delivery in May.", "name": "Jo Smith"}


def test_a_multiline_value_runs_to_the_end_of_the_body_when_no_template_line_follows():
    template = compile_template("t", "Name: {{ name }}\nMessage: {{ message | multiline }}")

    found = template.extract("Name: Jo Smith\nMessage: First line\nsecond line\nlast line\n\n\n")

    assert found.fields["message"] == "First line\nsecond line\nlast line"


def test_a_multiline_value_also_stops_at_a_template_line_without_placeholders():
    template = compile_template("t", "Message: {{ message | multiline }}\n-- end of form --")

    found = template.extract("Message: one\ntwo\n-- END OF FORM --\nUnsubscribe here")

    assert found.fields == {"message": "one\ntwo"}


@pytest.mark.parametrize("separator", ["-- ", "--", "--\t"])
def test_a_multiline_value_stops_at_a_signature_separator(separator):
    template = compile_template("t", "Name: {{ name }}\nMessage: {{ message | multiline }}")

    found = template.extract(f"Name: Jo\nMessage: Please call.\n-- not a separator\n{separator}\nJo Smith\nCEO, ACME")

    assert found.fields["message"] == "Please call.\n-- not a separator"


def test_a_multiline_value_runs_over_a_line_that_matches_only_its_own_template_line():
    template = compile_template("t", "Message: {{ message | multiline }}\nName: {{ name }}")

    found = template.extract("Message: See below\nmessage: as quoted from my last mail\nName: Jo")

    assert found.fields["message"] == "See below\nmessage: as quoted from my last mail"


def test_a_multiline_value_may_start_on_the_line_after_its_label():
    template = compile_template("t", "Message: {{ message | multiline }}\nName: {{ name }}")

    found = template.extract("Message:\nHello\nthere\nName: Jo")

    assert found.fields["message"] == "Hello\nthere"


def test_a_value_without_multiline_stays_on_its_own_line():
    template = compile_template("t", "Message: {{ message }}\nName: {{ name }}")

    found = template.extract("Message: Hello\nthere\nName: Jo")

    assert found.fields["message"] == "Hello"


# --- template errors -----------------------------------------------------------------


def test_an_unknown_filter_is_a_template_error_naming_the_filter():
    with pytest.raises(TemplateError, match="unknown filter 'uppercase'"):
        compile_template("t", "Name: {{ name | uppercase }}")


@pytest.mark.parametrize("bad_name", ["1email", "e-mail", "first name", ""])
def test_a_bad_field_name_is_a_template_error_naming_the_field(bad_name):
    with pytest.raises(TemplateError, match="is not a field name") as raised:
        compile_template("t", "Email: {{ %s }}" % bad_name)

    assert repr(bad_name) in str(raised.value)


@pytest.mark.parametrize(
    "line", ["Name: {{ name", "Name: {{ name }} }}", "Name: {{ name }} and {{", "Name: name }}"]
)
def test_unbalanced_braces_are_a_template_error_naming_the_line(line):
    with pytest.raises(TemplateError, match="unbalanced") as raised:
        compile_template("t", f"Email: {{{{ email }}}}\n{line}")

    assert "line 2" in str(raised.value)


def test_a_stray_closing_brace_before_a_placeholder_is_a_template_error():
    with pytest.raises(TemplateError, match="unbalanced"):
        compile_template("t", "Name: }} {{ name }}")


@pytest.mark.parametrize("body", ["Name:\nEmail:", "", "Name: { name }"])
def test_a_template_without_placeholders_is_a_template_error(body):
    with pytest.raises(TemplateError, match="no {{ field }} placeholder") as raised:
        compile_template("signature", body)

    assert "'signature'" in str(raised.value)


# --- from fields to a lead -----------------------------------------------------------


def test_fields_other_than_the_lead_fields_become_custom_fields():
    template = bound("quote", "Name: {{ name }}\nEmail: {{ email }}\nBudget: {{ budget }}\nCity: {{ city }}")

    draft = extract_lead(message("Name: Jo\nEmail: jo@acme.test\nBudget: 5000 EUR\nCity: Vilnius"), [template])

    assert draft.template == "quote"
    assert (draft.name, draft.email) == ("Jo", "jo@acme.test")
    assert draft.fields == {"budget": "5000 EUR", "city": "Vilnius"}


def test_an_extracted_email_that_is_not_a_valid_address_is_kept_only_as_a_custom_field():
    template = bound("contact-form", CONTACT_FORM)
    body = FORM_BODY.replace("jo@acme.test", "jo at acme dot test")

    draft = extract_lead(message(body), [template])

    assert draft.template == "contact-form"
    assert draft.email is None
    assert draft.contact is None
    assert draft.fields == {"email": "jo at acme dot test"}
    assert draft.name == "Jo Smith"


# --- choosing the template -------------------------------------------------------------


def test_templates_are_tried_in_order_and_the_first_match_wins():
    first = bound("first", "Name: {{ name }}")
    second = bound("second", "Name: {{ name }}\nEmail: {{ email }}")

    assert extract_lead(message(FORM_BODY), [first, second]).template == "first"
    assert extract_lead(message(FORM_BODY), [second, first]).template == "second"


def test_a_template_that_does_not_match_gives_way_to_the_next_one():
    needs_order = bound("order", "Order number: {{ order }}")
    contact = bound("contact-form", CONTACT_FORM)

    draft = extract_lead(message(FORM_BODY), [needs_order, contact])

    assert draft.template == "contact-form"
    assert draft.email == "jo@acme.test"


def test_a_template_whose_sender_glob_refuses_the_message_is_skipped_even_if_its_body_matches():
    other_site = bound("other-site", CONTACT_FORM, from_glob="*@other-site.example")
    ours = bound("ours", CONTACT_FORM, from_glob="*@FORMS.example.com")

    draft = extract_lead(message(FORM_BODY), [other_site, ours])

    assert draft.template == "ours"


def test_a_template_whose_subject_glob_refuses_the_message_is_skipped():
    quotes = bound("quotes", CONTACT_FORM, subject_glob="Quote request*")
    enquiries = bound("enquiries", CONTACT_FORM, subject_glob="new ENQUIRY*")

    draft = extract_lead(message(FORM_BODY, subject="New enquiry from the website"), [quotes, enquiries])

    assert draft.template == "enquiries"


def test_a_refusing_filter_yields_no_extraction_at_all():
    template = bound("t", CONTACT_FORM, from_glob="*@elsewhere.example")

    assert template.try_on(message(FORM_BODY)) is None
    assert bound("t", CONTACT_FORM, from_glob="noreply@*").try_on(message(FORM_BODY)).matched


def test_when_no_template_matches_the_lead_comes_from_the_sender_and_the_body():
    template = bound("contact-form", CONTACT_FORM)
    msg = message("  Hello, can you call me back?\n", sender=Address("Jo Smith", "jo@acme.test"))

    draft = extract_lead(msg, [template])

    assert draft.template is None
    assert (draft.name, draft.email) == ("Jo Smith", "jo@acme.test")
    assert draft.message == "Hello, can you call me back?"
    assert draft.fields == {}
    assert draft.phone is None and draft.company is None


def test_when_no_template_matches_reply_to_is_preferred_over_from():
    msg = message(
        "Hello",
        sender=Address("Mailer", "noreply@forms.example.com"),
        reply_to=Address("Jo Smith", "jo@acme.test"),
    )

    draft = extract_lead(msg, [])

    assert (draft.name, draft.email) == ("Jo Smith", "jo@acme.test")


def test_when_a_template_is_filtered_out_the_lead_comes_from_the_message():
    template = bound("contact-form", CONTACT_FORM, subject_glob="Quote*")

    draft = extract_lead(message(FORM_BODY, sender=Address("", "jo@acme.test")), [template])

    assert draft.template is None
    assert draft.name is None
    assert draft.email == "jo@acme.test"
    assert draft.message == FORM_BODY.strip()


# --- HTML-only notifications -----------------------------------------------------------


def test_an_html_only_notification_keeps_each_table_row_on_its_own_line():
    parsed = parse_message((FIXTURES / "html_table_form.eml").read_bytes())

    lines = parsed.text.splitlines()

    assert "Name: Joël Smith" in lines
    assert "Email: jo@acme.test" in lines
    assert "Phone: +370 600 00000" in lines
    assert "Company: ACME & Sons" in lines
    assert "Message: Please send a quote." in lines


def test_the_contact_form_template_extracts_from_an_html_table_notification():
    parsed = parse_message((FIXTURES / "html_table_form.eml").read_bytes())

    draft = extract_lead(parsed, [bound("contact-form", CONTACT_FORM)])

    assert draft.template == "contact-form"
    assert draft.name == "Joël Smith"
    assert draft.email == "jo@acme.test"
    assert draft.phone == "+370 600 00000"
    assert draft.company == "ACME & Sons"
    assert draft.message == "Please send a quote."


def test_html_paragraphs_and_line_breaks_become_separate_lines():
    parsed = parse_message((FIXTURES / "html_table_form.eml").read_bytes())

    lines = parsed.text.splitlines()

    assert lines[:3] == ["You have a new submission from your website.", "First paragraph line.", "Second line after br."]


def test_script_style_and_title_content_is_dropped_from_html():
    parsed = parse_message((FIXTURES / "html_table_form.eml").read_bytes())

    for unwanted in ("tracking", "pixel", "color", "display", "Submission"):
        assert unwanted not in parsed.text


def html_message(html: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Website <noreply@forms.example.com>"
    msg["To"] = "sales@example.com"
    msg["Subject"] = "New enquiry"
    msg["Message-ID"] = "<html-1@forms.example.com>"
    msg.set_content(html, subtype="html")
    return bytes(msg)


def test_a_single_text_html_part_is_turned_into_lines_a_template_can_read():
    html = (
        "<div>Name: <b>Jo Smith</b></div><div>Email: jo@acme.test</div>"
        "<table><tr><th>Message:</th><td>Hello<br>we need chairs</td></tr></table>"
        "<script>document.write('Name: Eve')</script>"
    )

    parsed = parse_message(html_message(html))
    draft = extract_lead(parsed, [bound("contact-form", CONTACT_FORM)])

    assert parsed.text == "Name: Jo Smith\nEmail: jo@acme.test\nMessage: Hello\nwe need chairs"
    assert (draft.name, draft.email, draft.message) == ("Jo Smith", "jo@acme.test", "Hello\nwe need chairs")


def test_the_body_is_kept_when_the_closing_head_tag_is_omitted():
    html = '<html><head><meta charset="utf-8"><body><p>Name: Jo Smith</p></body></html>'

    assert parse_message(html_message(html)).text == "Name: Jo Smith"
