"""Signed survey links: one customer, one complaint or general survey, until they expire; the token says
nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

from services.notifications import surveys
from services.notifications.workflow import unsubscribe_token

SECRET = b"s" * 32
SENT = datetime(2026, 3, 2, 9, tzinfo=UTC)


def fields(link: str) -> dict[str, str]:
    return dict(parse_qsl(link.split("?", 1)[1]))


def test_a_link_answers_for_its_customer_and_complaint_until_it_expires() -> None:
    query = fields(surveys.link("https://x/surveys", SECRET, "C-1", "CP-1", SENT, timedelta(days=14)))
    expires, token = int(query["expires"]), query["token"]
    assert (query["customer_id"], query["complaint_id"]) == ("C-1", "CP-1")
    assert expires == int((SENT + timedelta(days=14)).timestamp())
    assert surveys.refusal(SECRET, "C-1", "CP-1", expires, token, SENT + timedelta(days=13)) is None
    assert "expired" in (surveys.refusal(SECRET, "C-1", "CP-1", expires, token, SENT + timedelta(days=15)) or "")
    for customer, complaint, until, secret in (("C-2", "CP-1", expires, SECRET), ("C-1", "CP-2", expires, SECRET),
                                               ("C-1", "CP-1", expires + 86400, SECRET),
                                               ("C-1", "CP-1", expires, b"t" * 32)):
        assert "token" in (surveys.refusal(secret, customer, complaint, until, token, SENT) or "")


def test_a_survey_token_is_no_unsubscribe_token_and_an_answer_id_is_the_links_own() -> None:
    token = surveys.token(SECRET, "C-1", "CP-1", 10**10)
    assert token != unsubscribe_token(SECRET, "C-1")
    assert surveys.answer_id(token) == surveys.answer_id(token) != surveys.answer_id(token[::-1])


def test_a_general_link_answers_for_its_customer_and_survey_until_it_expires() -> None:
    link = surveys.general_link("https://x/surveys", SECRET, "C-1", "purchase:O-1", SENT, timedelta(days=14))
    query = fields(link)
    expires, token = int(query["expires"]), query["token"]
    assert (query["customer_id"], query["survey"]) == ("C-1", "purchase:O-1") and "complaint_id" not in query
    assert surveys.general_refusal(SECRET, "C-1", "purchase:O-1", expires, token, SENT + timedelta(days=13)) is None
    assert "expired" in (surveys.general_refusal(SECRET, "C-1", "purchase:O-1", expires, token,
                                                 SENT + timedelta(days=15)) or "")
    for customer, survey, until in (("C-2", "purchase:O-1", expires), ("C-1", "purchase:O-2", expires),
                                    ("C-1", "satisfaction:90:1", expires), ("C-1", "purchase:O-1", expires + 1)):
        assert "token" in (surveys.general_refusal(SECRET, customer, survey, until, token, SENT) or "")


def test_a_general_token_never_passes_for_a_complaints_and_a_complaints_never_for_a_general_one() -> None:
    expires = 10**10
    general = surveys.general_token(SECRET, "C-1", "purchase:O-1", expires)
    complaint = surveys.token(SECRET, "C-1", "CP-1", expires)
    # Whatever complaint the general link is made to name, its token does not score it.
    for complaint_id in ("purchase:O-1", "CP-1", "O-1"):
        assert surveys.refusal(SECRET, "C-1", complaint_id, expires, general, SENT) is not None
    assert surveys.general_refusal(SECRET, "C-1", "purchase:CP-1", expires, complaint, SENT) is not None
    # Ids with colons cannot shift a part of one field into another.
    assert surveys.general_token(SECRET, "C:1", "purchase:O-1", expires) != surveys.general_token(
        SECRET, "C", "1:purchase:O-1", expires)
