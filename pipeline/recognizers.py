"""The project's own Presidio recognizers for PII in real-estate lead conversations.

Every recognizer here is a Presidio ``EntityRecognizer`` (most are ``PatternRecognizer`` subclasses),
so they plug into one ``AnalyzerEngine`` with an explicit recognizer list. What they add over
Presidio's stock pattern matching:

* a regex timeout that *raises* (:class:`RecognizerTimeout`) instead of Presidio's
  "log and skip" (which would let text through unredacted);
* required cues: some patterns (bare 10-digit phones, 7-digit locals, bare SSNs, bank and routing
  numbers, dates of birth) only count when a cue word appears as a whole word shortly before or
  after the match, and a negative cue (``order``, ``mls``, ``invoice`` ...) right before vetoes it;
* checksums via Presidio's ``validate_result`` hook (Luhn for cards, ABA for routing numbers)
  and ``phonenumbers`` validation for international numbers;
* a named group ``v`` so that only the value part of a cue pattern is reported
  ("my name is <v>", "password: <v>").

No network access: emails are matched by our own pattern (Presidio's LeadEmailRecognizer calls
tldextract, which may download the public suffix list).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import phonenumbers
import regex
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

FLAGS = regex.IGNORECASE | regex.MULTILINE


class RecognizerTimeout(RuntimeError):
    """A recognizer regex ran past its time budget; the caller must fail closed."""


def _words(*ws: str) -> str:
    return r"\b(?:" + "|".join(ws) + r")\b"


@dataclass(frozen=True)
class Rule:
    """A pattern plus how to decide whether a match counts."""

    name: str
    pattern: str
    score: float = 0.85
    needs_cue: bool = False
    case_sensitive: bool = False


class GuardedPatternRecognizer(PatternRecognizer):
    """PatternRecognizer with fail-closed regex timeouts, required cues and value groups."""

    def __init__(
        self,
        entity: str,
        rules: Sequence[Rule],
        *,
        name: str,
        cue: str | None = None,
        negative_cue: str | None = None,
        cue_before: int = 40,
        cue_after: int = 30,
        timeout_s: float = 1.0,
        prefilters: dict[str, str] | None = None,
        requires: str | None = None,
    ) -> None:
        self.rules = list(rules)
        # cheap checks that let a rule (or the whole recognizer) skip a text that cannot match:
        # most messages have no "@", no 3-digit run, no "&" ... (a speed measure, never a filter
        # on what counts: a prefilter must match every text the rule itself could match)
        self._requires = regex.compile(requires) if requires else None
        self._prefilters = {k: regex.compile(v, FLAGS) for k, v in (prefilters or {}).items()}
        self.rec_name: str = name
        self.timeout_s = timeout_s
        self.cue_before = cue_before
        self.cue_after = cue_after
        self._cue = regex.compile(cue, FLAGS) if cue else None
        self._neg = regex.compile(negative_cue + r"\W{0,4}$", FLAGS) if negative_cue else None
        self._compiled = [
            (r, regex.compile(r.pattern, 0 if r.case_sensitive else FLAGS)) for r in self.rules
        ]
        super().__init__(
            supported_entity=entity,
            name=name,
            patterns=[Pattern(r.name, r.pattern, r.score) for r in self.rules],
            supported_language="en",
        )

    def has_cue(self, text: str, start: int, end: int) -> bool:
        if self._cue is None:
            return True
        before = text[max(0, start - self.cue_before) : start]
        after = text[end : end + self.cue_after]
        return bool(self._cue.search(before, timeout=self.timeout_s) or self._cue.search(after, timeout=self.timeout_s))

    def chained(self, text: str, start: int, found: Sequence[RecognizerResult]) -> bool:
        """A value listed right after one this recognizer already accepted shares its cue.

        "my ssn 456 78 9012 and my wife's is 456 78 9013", "DOB for both: me 3/3/80, wife 9/12/82".
        """
        for r in found:
            if r.end <= start and start - r.end <= self.cue_before and "\n\n" not in text[r.end : start]:
                return True
        return False

    def vetoed(self, text: str, start: int) -> bool:
        if self._neg is None:
            return False
        return bool(self._neg.search(text[max(0, start - 24) : start], timeout=self.timeout_s))

    def strong_without_cue(self, text: str, start: int, end: int, rule: Rule) -> bool:
        """A cue-needing value that is convincing on its own (e.g. a valid NANP phone number)."""
        return False

    def check_in_context(self, text: str, start: int, end: int, rule: Rule) -> bool:
        return self.check(text[start:end], rule)

    def check(self, value: str, rule: Rule) -> bool:
        """Extra validation of a matched value (checksums etc.); True keeps it."""
        ok = self.validate_result(value)
        return ok is not False and not self.invalidate_result(value)

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        if self._requires is not None and not self._requires.search(text):
            return results
        for rule, rx in self._compiled:
            pre = self._prefilters.get(rule.name)
            if pre is not None and not pre.search(text):
                continue
            try:
                for m in rx.finditer(text, timeout=self.timeout_s):
                    if "v" in rx.groupindex and m.group("v") is not None:
                        start, end = m.span("v")
                    else:
                        start, end = m.span()
                    if start >= end:
                        continue
                    if rule.needs_cue and not (
                        self.has_cue(text, start, end)
                        or self.chained(text, start, results)
                        or self.strong_without_cue(text, start, end, rule)
                    ):
                        continue
                    if self.vetoed(text, start):
                        continue
                    if not self.check_in_context(text, start, end, rule):
                        continue
                    results.append(self._result(start, end, rule.score, rule.name))
            except TimeoutError as exc:
                raise RecognizerTimeout(f"{self.rec_name}/{rule.name}: regex timed out") from exc
        return results

    def _result(self, start: int, end: int, score: float, rule: str) -> RecognizerResult:
        return RecognizerResult(
            entity_type=self.supported_entities[0],
            start=start,
            end=end,
            score=score,
            recognition_metadata={
                RecognizerResult.RECOGNIZER_NAME_KEY: self.rec_name,
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                "rule": rule,
            },
        )


# --------------------------------------------------------------------------- email

class LeadEmailRecognizer(GuardedPatternRecognizer):
    def __init__(self, timeout_s: float = 1.0) -> None:
        super().__init__(
            "EMAIL_ADDRESS",
            [
                Rule(
                    "email",
                    r"(?<![\w.%+-])[a-z0-9][a-z0-9._%+'-]{0,63}[ \t]?@[ \t]?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b",
                    0.95,
                ),
                Rule(
                    "email-obfuscated",
                    # "jane dot doe at example dot org", "mgarcia(at)example(dot)com"
                    r"(?<![\w.%+-])[a-z0-9][a-z0-9._%+-]{0,63}"
                    r"(?:(?:\s*(?:\(dot\)|\[dot\])\s*|\s+dot\s+)[a-z0-9_%+-]{1,63}){0,3}"
                    r"\s*(?:\(at\)|\[at\]|\{at\}|\s+at\s+)\s*"
                    r"[a-z0-9-]+(?:\s*(?:\.|\(dot\)|\[dot\]|\s+dot\s+)\s*[a-z0-9-]+)*?"
                    r"\s*(?:\.|\(dot\)|\[dot\]|\s+dot\s+)\s*(?:com|org|net|edu|gov|io|co|us|info|biz)\b",
                    0.8,
                ),
            ],
            name="LeadEmailRecognizer",
            timeout_s=timeout_s,
            prefilters={"email": "@", "email-obfuscated": r"\bat\b|\(at\)|\[at\]|\{at\}"},
        )


# --------------------------------------------------------------------------- phone

PHONE_CUE = _words(
    "call", "calls", "calling", "text", "texts", "txt", "phone", "ph", "cell", "cellphone", "mobile", "mob",
    "number", "num", "no", "tel", "telephone", "fax", "office", "reach", "contact", "dial", "sms",
    "whatsapp", "line", "direct", "home", "work", "ring", "voicemail", "vm", "c", "m", "o", "p",
    # Spanish / French leads
    "celular", "cel", "tel[eé]fono", "m[oó]vil", "n[uú]mero", "llamar", "ll[aá]mame", "ll[aá]meme", "mensaje",
    "portable", "t[eé]l[eé]phone", "t[eé]l", "appelez", "appeler",
)
_ID_WORDS = (
    "order", "invoice", "mls", "form", "confirmation", "conf", "ticket", "ref", "reference", "case", "id",
    "tracking", "lot", "parcel", "apn", "permit", "policy", "loan", "claim", "receipt", "transaction", "txn",
)
#: before a bank-account candidate: an id of something else ("acct 6083... Order #8166808862")
BANK_VETO = _words(*_ID_WORDS, "phone", "cell", "mobile", "tel", "fax", "zip") + r"\s*(?:#|no\.?|number|num)?\s*:?"
NUMBER_VETO = _words(
    "order", "invoice", "mls", "form", "confirmation", "conf", "ticket", "ref", "reference", "case",
    "account", "acct", "routing", "aba", "ssn", "social", "id", "tracking", "lot", "parcel", "apn",
    "permit", "policy", "loan", "claim", "receipt", "transaction", "txn",
) + r"\s*(?:#|no\.?|number|num)?\s*:?"
_SPACE = r"[ \t\u00a0\u2000-\u200a\u202f]"
# one separator between digit groups: a space, or a dot/dash/slash with optional spaces around it
_SEP = rf"(?:{_SPACE}*[.\-/\u2010-\u2015\u2212]{_SPACE}*|{_SPACE})"
_EXT = r"(?:\s*(?:x|ext\.?|extension|#)\s*\d{1,5}\b)?"


_DIGIT_WORD = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|(?:double|triple)\s+(?:zero|oh|one|two|three|four|five|six|seven|eight|nine))"


class LeadPhoneRecognizer(GuardedPatternRecognizer):
    """US/NANP phones by pattern, international phones via ``phonenumbers``."""

    def check_in_context(self, text: str, start: int, end: int, rule: Rule) -> bool:
        if rule.name == "intl" and not self.check(text[start:end], rule):
            # a number the metadata does not know (legacy "+52 1 ..." mobiles) still counts next to a cue
            digits = sum(ch.isdigit() for ch in text[start:end])
            return 8 <= digits <= 15 and self.has_cue(text, start, end)
        return self.check(text[start:end], rule)

    def strong_without_cue(self, text: str, start: int, end: int, rule: Rule) -> bool:
        # a free-standing 10-digit number that is a valid US number; not one glued inside an id
        # ("669e5795add2094075906c65"), where only a cue makes it a phone
        if rule.name != "us-bare" or text[start - 1 : start].isalnum() or text[end : end + 1].isalnum():
            return False
        try:
            return phonenumbers.is_valid_number(phonenumbers.parse(text[end - 10 : end], "US"))
        except phonenumbers.NumberParseException:
            return False

    def __init__(self, timeout_s: float = 1.0) -> None:
        rules = [
            # (512) 555-0143, 512-555-0187, 512.555.0187, +1 512 555 0166, 1-512-555-0187 x204
            Rule(
                "us-formatted",
                rf"(?<![\d+])(?:\+?1{_SEP}?)?(?:\(\d{{3}}\){_SEP}?|\d{{3}}{_SEP}|\d{{3}}(?=\d{{3}}{_SEP}))\d{{3}}{_SEP}?\d{{4}}(?!\d){_EXT}",
                0.85,
            ),
            # +15125550147 / +1 5125550147
            Rule("us-e164", rf"(?<![\d+])\+1{_SEP}?\d{{10}}(?!\d){_EXT}", 0.9),
            # 5125550199 (bare 10 digits) needs a cue
            # (without a cue it still counts when phonenumbers says it is a valid US number; ids are
            # stopped by the negative cue: order/invoice/conf/id/tracking ... #)
            Rule("us-bare", r"(?<![\d+#$.,])1?\d{10}(?!\d|[,.]\d)", 0.75, needs_cue=True),
            # 555-0123 (7-digit local) needs a cue
            Rule("us-local", rf"(?<![\d\-.])\d{{3}}{_SEP}\d{{4}}(?![\d\-.]\d)", 0.7, needs_cue=True),
            # +52 55 1234 5678 / 0044 20 7946 0958 (validated by phonenumbers)
            Rule("intl", r"(?<![\w+])(?:\+|00)[1-9][\d \t().\-]{6,20}\d(?!\d)", 0.85),
            # spelled out, as in call transcripts: "five one two five five five zero one four six"
            Rule("spoken", rf"\b(?:{_DIGIT_WORD}[\s,\-]+){{6,14}}{_DIGIT_WORD}\b", 0.7),
            # French national format 01 23 45 67 89 (validated by phonenumbers)
            Rule("fr-national", r"(?<!\d)0[1-9](?:[ .]\d{2}){4}(?!\d)", 0.8),
        ]
        super().__init__(
            "PHONE_NUMBER", rules, name="LeadPhoneRecognizer", cue=PHONE_CUE, negative_cue=NUMBER_VETO,
            cue_before=32, cue_after=24, timeout_s=timeout_s,
            prefilters={
                **{r.name: r"\d{3}" for r in rules if r.name not in {"spoken", "fr-national"}},
                "fr-national": r"\d{2}[ .]\d{2}",
                "spoken": rf"\b{_DIGIT_WORD}[\s,\-]+{_DIGIT_WORD}\b",
            },
        )

    def check(self, value: str, rule: Rule) -> bool:
        digits = "".join(ch for ch in value if ch.isdigit())
        if rule.name in {"us-formatted", "us-e164", "us-bare"}:
            core = digits[1:] if len(digits) == 11 and digits.startswith("1") else digits
            if "x" in value.lower() or "#" in value:
                core = core[:10]
            # NANP: area code and exchange do not start with 0 or 1
            return len(core) >= 10 and core[0] not in "01" and core[3] not in "01"
        if rule.name == "spoken":
            n = sum(3 if w == "triple" else 2 if w == "double" else 0 for w in value.lower().split())
            n += len(regex.findall(r"zero|oh|one|two|three|four|five|six|seven|eight|nine", value.lower()))
            n -= sum(1 for w in value.lower().split() if w in {"double", "triple"})
            return n in (7, 10, 11)
        if rule.name == "us-local":
            return digits[0] not in "01"
        if rule.name == "intl":
            cand = "+" + value.lstrip("+")[2:] if value.startswith("00") else value
            try:
                num = phonenumbers.parse(cand, None)
            except phonenumbers.NumberParseException:
                return False
            # "possible" (right length for the country) rather than "valid": fictional/unassigned
            # ranges (+44 7700 900xxx) are still someone's number to a reader
            return phonenumbers.is_possible_number(num)
        if rule.name == "fr-national":
            try:
                return phonenumbers.is_valid_number(phonenumbers.parse(value, "FR"))
            except phonenumbers.NumberParseException:
                return False
        return True


# --------------------------------------------------------------------------- cards

def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


_CARD_PREFIX = regex.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[068]|35|6(?:011|5|4[4-9]|2)|50|5[6-9]|6[7-9])")


class LeadCreditCardRecognizer(GuardedPatternRecognizer):
    def __init__(self, timeout_s: float = 1.0) -> None:
        super().__init__(
            "CREDIT_CARD",
            # groups separated by one or two spaces, or a dash/dot with optional spaces around it
            [Rule("card", r"(?<![\d.,$])\d(?:(?:[ \t]{0,2}[\-.\u2010-\u2015][ \t]{0,2}|[ \t]{1,2})?\d){12,18}(?!\d|[,.]\d)", 0.9)],
            name="LeadCreditCardRecognizer",
            requires=r"\d",
            timeout_s=timeout_s,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = "".join(ch for ch in pattern_text if ch.isdigit())
        return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_ok(digits)


# --------------------------------------------------------------------------- SSN

SSN_CUE = _words("ssn", "ss#", "ss", "social", "security", "tin", "itin", "taxpayer", "soc", "sin")
_DASH = r"[\-\u2010-\u2015\u2212\u2043\ufe58\ufe63\uff0d]"
# any Unicode space (NBSP, thin space ...) or a dash with optional spaces around it
_SSN_SEP = rf"(?:{_SPACE}*{_DASH}{_SPACE}*)"


class LeadSsnRecognizer(GuardedPatternRecognizer):
    def __init__(self, timeout_s: float = 1.0) -> None:
        super().__init__(
            "US_SSN",
            [
                Rule("ssn-dashed", rf"(?<![\d\-.])\d{{3}}{_DASH}\d{{2}}{_DASH}\d{{4}}(?![\d\-]|\.\d)", 0.85),
                Rule("ssn-spaced-dash", rf"(?<![\d\-.])\d{{3}}{_SSN_SEP}\d{{2}}{_SSN_SEP}\d{{4}}(?![\d\-]|\.\d)", 0.6, needs_cue=True),
                Rule("ssn-spaced", rf"(?<![\d.])\d{{3}}{_SPACE}\d{{2}}{_SPACE}\d{{4}}(?!\d|{_SPACE}\d)", 0.6, needs_cue=True),
                Rule("ssn-dotted", r"(?<![\d.])\d{3}\.\d{2}\.\d{4}(?![\d.])", 0.6, needs_cue=True),
                # bare 9 digits: "SSN#123456789" is fine (the cue is required), "$123456789" is not
                Rule("ssn-bare", r"(?<![\d.,$])\d{9}(?!\d|[,.]\d)", 0.7, needs_cue=True),
            ],
            name="LeadSsnRecognizer",
            requires=r"\d",
            cue=SSN_CUE,
            cue_before=30,
            cue_after=20,
            timeout_s=timeout_s,
        )

    def invalidate_result(self, pattern_text: str) -> bool | None:
        d = "".join(ch for ch in pattern_text if ch.isdigit())
        return d[:3] in {"000", "666"} or d[3:5] == "00" or d[5:] == "0000" or len(set(d)) == 1


# --------------------------------------------------------------------------- bank

def aba_ok(d: str) -> bool:
    if len(d) != 9 or not d.isdigit():
        return False
    w = (3, 7, 1) * 3
    return sum(int(c) * k for c, k in zip(d, w, strict=True)) % 10 == 0 and d[:2] in _ABA_PREFIXES


_ABA_PREFIXES = {f"{i:02d}" for i in list(range(0, 13)) + list(range(21, 33)) + list(range(61, 73)) + [80]}


def iban_ok(value: str) -> bool:
    s = value.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    try:
        return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1
    except ValueError:
        return False


class LeadAbaRoutingRecognizer(GuardedPatternRecognizer):
    def __init__(self, timeout_s: float = 1.0) -> None:
        super().__init__(
            "ABA_ROUTING_NUMBER",
            [Rule("aba", r"(?<![\d.,$])\d{9}(?!\d|[,.]\d)", 0.85, needs_cue=True)],
            name="LeadAbaRoutingRecognizer",
            requires=r"\d",
            cue=_words("routing", "aba", "rtn", "rtg", "rte", "transit", "wire", "wiring", "bank", "r/t", "rt", "abartn"),
            cue_before=40,
            cue_after=20,
            timeout_s=timeout_s,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        return aba_ok(pattern_text)


# digits with dashes; spaces only between groups of 3+ ("4400 1234 5678", not "123456 2 car garage")
_ACCT_DIGITS = r"\d+(?:-\d+)*(?: \d{3,}(?:-\d+)*)*"


class LeadBankAccountRecognizer(GuardedPatternRecognizer):
    def __init__(self, timeout_s: float = 1.0) -> None:
        super().__init__(
            "US_BANK_NUMBER",
            [
                Rule(
                    "account",
                    r"\b(?:account|acct|acc|a/c|checking|savings|iban|beneficiary)\b(?:\s*(?:number|no\.?|num|#))?(?:\s+(?:is|was|will\s+be))?\s*[:#=-]?\s*(?<v>[a-z]{0,4}"
                    + _ACCT_DIGITS + r")(?!\d|[,.]\d)",
                    0.85,
                ),
                # "acct ending 88, full # 000987654388", "routing/account: 011000015 / 55551234"
                Rule("account-near-cue", r"(?<![\d.,$/\-])" + _ACCT_DIGITS + r"(?!\d|[,.]\d|/\d)", 0.7, needs_cue=True),
                # IBAN, printed in groups of four; mod-97 checked
                Rule("iban", r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b", 0.9, case_sensitive=True),
            ],
            name="LeadBankAccountRecognizer",
            requires=r"\d",
            cue=_words("account", "acct", "acc", "a/c", "checking", "savings", "beneficiary", "iban", r"deposit\s+to"),
            negative_cue=BANK_VETO,
            prefilters={"account": r"acc|a/c|checking|savings|iban|beneficiary"},
            cue_before=40,
            cue_after=0,
            timeout_s=timeout_s,
        )

    def check(self, value: str, rule: Rule) -> bool:
        if rule.name == "iban":
            return iban_ok(value)
        digits = sum(ch.isdigit() for ch in value)
        if rule.name == "account-near-cue":
            return 6 <= digits <= 17
        return 6 <= digits <= 34


# --------------------------------------------------------------------------- DOB

_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
_DATE = (
    r"(?:\d{1,2} ?[/\-.] ?\d{1,2} ?[/\-.] ?(?:19|20)?\d{2}"
    r"|(?:19|20)\d{2}[/\-.]\d{1,2}[/\-.]\d{1,2}"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:19|20)\d{{2}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+(?:19|20)\d{{2}})"
)


class LeadDateOfBirthRecognizer(GuardedPatternRecognizer):
    def __init__(self, timeout_s: float = 1.0) -> None:
        super().__init__(
            "DATE_OF_BIRTH",
            [Rule("dob", rf"(?<![\w/.\-]){_DATE}(?![\w/\-]|\.\d)", 0.85, needs_cue=True)],
            name="LeadDateOfBirthRecognizer",
            requires=r"\d",
            cue=(
                r"\b(?:dob|d\.o\.b\.?|born|birthday|bday|b-day|birthdate|birth\s*date|date\s+of\s+birth|"
                r"nacimiento|fecha\s+de\s+nac\.?|nac[ií]|cumplea[nñ]os|n[ée]e?\s+le|date\s+de\s+naissance)(?!\w)"
            ),
            cue_before=30,
            cue_after=0,
            timeout_s=timeout_s,
        )


# --------------------------------------------------------------------------- street address

# USPS street suffixes (Publication 28, common forms) and their usual abbreviations
_SUFFIX_WORDS = """
alley avenue branch bridge brook brooks burg burgs bypass camp canyon cape causeway center centers
circle circles cliff cliffs club common corner corners course court courts cove coves creek crescent
crest crossing crossroad curve dale dam divide drive drives estate estates expressway extension
extensions fall falls ferry field fields flat flats ford fords forest forge forges fork forks fort
freeway garden gardens gateway glen glens green greens grove groves harbor harbors haven heights highway
hill hills hollow inlet island islands isle junction junctions key keys knoll knolls lake lakes land
landing lane light lights loaf lock locks lodge loop mall manor manors meadow meadows mews mill mills
mission motorway mount mountain mountains neck orchard oval overpass park parks parkway parkways pass
passage path pike pine pines place plain plains plaza point points port ports prairie radial ramp ranch
rapid rapids rest ridge ridges river road roads route row rue run shoal shoals shore shores skyway
spring springs spur spurs square squares station stravenue stream street streets summit terrace
throughway trace track trafficway trail tunnel turnpike underpass union unions valley valleys via
viaduct view views village villages ville vista walk walks wall way ways well wells
st rd ave av ln dr blvd ct pl cir trl pkwy ter hwy xing cv pt aly expy fwy plz hts cres jct tpke rte
boulevard close commons
""".split()
_SUFFIX = r"(?:" + "|".join(sorted(set(_SUFFIX_WORDS), key=len, reverse=True)) + r")"
_STOP = (
    r"(?:the|a|an|on|in|at|of|to|for|and|or|my|our|your|his|her|their|this|that|these|those|is|are|was|"
    r"be|by|from|with|more|other|next|last|all|some|any|few|many|homes?|houses?|units?|beds?|baths?|"
    r"bedrooms?|bathrooms?|days?|weeks?|months?|years?|hours?|mins?|minutes?|miles?|blocks?|min|sq|ft|"
    r"car|cars|kids|people|offers?|showings?|acres?|stories|story|levels?|floors?|times?|pm|am|k|m|i|we|you)"
)
_DIR = r"(?:n|s|e|w|ne|nw|se|sw|north|south|east|west)\.?"
# numbered routes used as street names: "21800 Hwy 71 W", "14200 County Road 110", "9012 Ranch Road 2222"
_ROUTE = (
    r"(?:hwy|highway|state\s+highway|sh|us|us\s+highway|fm|farm\s+to\s+market(?:\s+road)?|rr|ranch\s+road|"
    r"county\s+road|cr|route|rte|state\s+route|sr)\.?\s*\d{1,5}[a-z]?"
)
_HOUSE = r"\d{1,6}[a-z]?(?:-\d{1,4})?(?:\s+1/2)?"
_UNIT = r"(?:,?\s*(?:apt|apartment|unit|suite|ste|#|bldg|building|fl|floor|rm|room|lot)\.?\s*#?\s*[a-z0-9\-]{1,6}\b)?"


class LeadStreetAddressRecognizer(GuardedPatternRecognizer):
    """House number + street name (1-4 words) + suffix, optional direction and unit."""

    def __init__(self, timeout_s: float = 1.0) -> None:
        street = (
            rf"(?<![\w$#.,/\-]){_HOUSE}\s+(?:{_DIR}\s+)?"
            rf"(?:(?!{_STOP}\b)[a-z0-9][a-z0-9'.\-]*\s+){{1,4}}?{_SUFFIX}\b\.?"
            # a street name that is itself a suffix word: "Pecan Grove Cv", "Brook Hollow Ln"
            rf"(?:\s+{_SUFFIX}\b\.?)?(?:\s+{_DIR}(?![\w/]))?{_UNIT}"
        )
        route = rf"(?<![\w$#.,/\-]){_HOUSE}\s+(?:{_DIR}\s+)?{_ROUTE}\b(?:\s+{_DIR}(?![\w/]))?{_UNIT}"
        # the street type first: "4405 Avenue B", "7405 Calle Sol", "12 Camino de la Vista"
        prefixed = (
            rf"(?<![\w$#.,/\-]){_HOUSE}\s+(?:{_DIR}\s+)?(?:avenue|ave|calle|camino|avenida|paseo|rue|via|plaza)\.?\s+"
            rf"(?:(?:de|del)\s+(?:la\s+|los\s+|las\s+)?)?(?!{_STOP}\b)[a-z0-9][\w'\-]*{_UNIT}"
        )
        # after an explicit address cue the street needs no suffix: "my address is 1107 Broadway,",
        # "lives at 3801 Speedway Apt 210", "vivo en 7405 Calle Sol"
        cued = (
            r"\b(?:(?:my|our|his|her|their|current|home|mailing|street|billing|new|old)\s+address(?:\s+is)?|address\s*:|"
            r"addr\s*:|live[sd]?\s+at|living\s+at|reside[sd]?\s+at|located\s+at|(?:my|our)\s+(?:place|house|home)\s+"
            r"(?:is\s+)?(?:at|on)|(?:send|mail|ship)\s+(?:it|them|the\s+\w+)?\s*to|vivo\s+en|vivimos\s+en|"
            r"direcci[oó]n(?:\s+es)?\s*:?|j'habite\s+au)\s*:?\s*"
            rf"(?<v>{_HOUSE}\s+(?:{_DIR}\s+)?(?:(?!{_STOP}\b)[a-z][a-z0-9'.\-]*)(?:\s+(?!{_STOP}\b)[a-z0-9][a-z0-9'.\-]*){{0,3}}?"
            rf"{_UNIT})(?=\s*(?:[,;\n(]|\.(?:\s|$)|$|\s+(?:in|near|and|but|for|until|since|so|please|pls|thanks)\b))"
        )
        super().__init__(
            "STREET_ADDRESS",
            [
                Rule("street", street, 0.8),
                Rule("route", route, 0.8),
                Rule("prefixed", prefixed, 0.75),
                Rule("cued", cued, 0.75),
                Rule("po-box", r"\b(?:p\.?\s?o\.?\s*box|post\s+office\s+box|apartado(?:\s+postal)?)\s+#?\s*\d{1,6}\b", 0.85),
            ],
            name="LeadStreetAddressRecognizer",
            requires=r"\d",
            timeout_s=timeout_s,
        )

    def check(self, value: str, rule: Rule) -> bool:
        if rule.name == "street":
            words = value.split()
            # "2,350 sq ft" style and bare ordinal streets need at least one alphabetic name token
            return len(words) >= 3 or any(w[:1].isalpha() for w in words[1:-1])
        return True


# --------------------------------------------------------------------------- credentials

def shannon_entropy(s: str) -> float:
    counts: dict[str, int] = {}
    for ch in s:
        counts[ch] = counts.get(ch, 0) + 1
    n = len(s)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


class LeadCredentialRecognizer(GuardedPatternRecognizer):
    def __init__(self, timeout_s: float = 1.0) -> None:
        rules = [
            Rule("bearer", r"\b(?:bearer|token|basic)(?:\s*[:=]\s*|\s+)(?<v>[a-z0-9._~+/=\-]{12,})", 0.9),
            Rule("stripe-like", r"\b(?:sk|pk|rk)_(?:live|test)_[a-z0-9]{8,}\b", 0.95),
            Rule("openai-like", r"\bsk-(?:proj-)?[a-z0-9_\-]{20,}\b", 0.9),
            Rule("github", r"\bgh[pousr]_[a-z0-9]{30,}\b", 0.95),
            Rule("slack", r"\bxox[abposr]-[a-z0-9\-]{10,}\b", 0.95),
            Rule("aws", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0.95, case_sensitive=True),
            Rule("jwt", r"\beyJ[a-z0-9_\-]{5,}\.eyJ[a-z0-9_\-]{5,}\.[a-z0-9_\-]{10,}", 0.95),
            Rule(
                "password",
                r"\b(?:password|passwd|passcode|pwd|pw|passphrase|contrase[nñ]a|mot\s+de\s+passe|"
                r"(?:login|gate|lockbox|lock\s*box|door|garage|alarm|access|entry|keypad|key\s*pad|building|"
                r"security|unlock|combo|wifi|wi-fi)\s+(?:code|pw|pass|password|pin|combo))"
                r"(?:\s+(?:is|was|will\s+be))?\s*[:=\-]?\s*(?<v>[^\s,;\"'<>]{3,64})",
                0.9,
            ),
            # a PIN is digits ("drop me a pin when you're there" is not a credential)
            Rule("pin", r"\bpin(?:\s+(?:code|number|no\.?|#))?(?:\s+(?:is|was))?\s*[:=#\-]?\s*(?<v>\d{3,8})\b", 0.9),
            Rule("pass-label", r"\b(?:pass|pword|p/w)\s*[:=]\s*(?<v>[^\s,;\"'<>]{3,64})", 0.9),
            Rule(
                "kv-secret",
                # key names embedded in longer ones too: aws_secret_access_key, stripeApiKey, X-API-Key
                r"(?:api[_\- ]?key|apikey|access[_\-]?token|auth[_\-]?token|refresh[_\-]?token|secret|"
                r"private[_\-]?key|password|passwd|credential)[\w\-]{0,40}"
                r"[\"']?\s*[:=]\s*[\"']?(?<v>[^\s\"'&,;<>]{8,})",
                0.9,
            ),
            Rule("high-entropy", r"(?<![\w\-/.])[a-z0-9_\-+]{32,}={0,2}(?![\w\-/])", 0.75),
        ]
        super().__init__(
            "CREDENTIAL", rules, name="LeadCredentialRecognizer", timeout_s=timeout_s,
            prefilters={
                "bearer": r"bearer|token|basic", "stripe-like": r"_(?:live|test)_", "openai-like": "sk-",
                "github": r"gh[pousr]_", "slack": "xox", "aws": "AKIA|ASIA", "jwt": "eyJ",
                "password": r"pass|pwd|pw|code|combo|contrase|mot\s+de", "pin": r"\bpin\b",
                "pass-label": r"pass|pword|p/w", "kv-secret": r"key|token|secret|passw|credential",
                "high-entropy": r"[a-z0-9_\-+]{32}",
            },
        )

    def check(self, value: str, rule: Rule) -> bool:
        if rule.name == "password":
            low = value.lower()
            return low not in {"is", "reset", "manager", "protected", "required", "please", "code", "number"} and (
                low not in COMMON_WORDS
            )
        if rule.name == "high-entropy":
            if regex.fullmatch(r"[0-9a-f\-]{32,40}", value, regex.IGNORECASE):  # uuids / hex ids
                return False
            classes = sum(
                bool(regex.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"\d")
            )
            return classes >= 3 and shannon_entropy(value) >= 4.0
        return True


# --------------------------------------------------------------------------- IP / URL

class LeadIpAddressRecognizer(GuardedPatternRecognizer):
    def __init__(self, timeout_s: float = 1.0) -> None:
        octet = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
        super().__init__(
            "IP_ADDRESS",
            [Rule("ipv4", rf"(?<![\d.]){octet}(?:\.{octet}){{3}}(?![\d.]|\.\d)", 0.7)],
            name="LeadIpAddressRecognizer",
            requires=r"\d",
            cue=_words("ip", "address", "from", "login", "logged", "server", "host"),
            timeout_s=timeout_s,
        )


class LeadPiiUrlRecognizer(GuardedPatternRecognizer):
    """URLs whose query string carries personal data (email=, phone=, name=, token= ...).

    Only the query string is reported; plain listing URLs stay readable.
    """

    def __init__(self, timeout_s: float = 1.0) -> None:
        super().__init__(
            "URL",
            [
                Rule(
                    "pii-query",
                    r"\bhttps?://[^\s?#\"'<>]+(?<v>\?[^\s#\"'<>]*\b(?:e-?mail|phone|tel|mobile|name|first_?name|last_?name|"
                    r"full_?name|address|dob|ssn|token|key|sig|signature|auth|code)=[^\s#\"'<>]*)",
                    0.8,
                )
            ],
            name="LeadPiiUrlRecognizer",
            timeout_s=timeout_s,
        )


# --------------------------------------------------------------------------- person names

# Words that end a cue-introduced name, or show that the cue did not introduce a name at all.
COMMON_WORDS = frozenset(
    """
    a about above after again against all also am an and any are as at back be because been before being
    below between both but by can could did do does doing down during each few for from further had has have
    having he her here hers him his how i if in into is it its itself just me more most my no nor not now of off
    on once only or other our out over own same she should so some such than that the their them then there
    these they this those through to too under until up very was we were what when where which while who whom
    why will with would you your yours yourself
    interested looking calling texting writing reaching following checking asking wondering hoping trying
    emailing messaging inquiring contacting replying responding getting going thinking planning ready
    available free busy home here there out still also just really very so not pre-approved preapproved
    approved qualified prequalified pre-qualified selling buying renting moving relocating new great good
    fine ok okay sure yes yeah hi hello hey thanks thank regarding re about for the a an your my our his her
    their its it is was be on in at to from with by of as that this these those what who when where why how
    interested excited happy glad sorry available able unable late early back done finished open closed
    agent realtor broker buyer seller lender owner investor landlord tenant team office manager assistant
    house home condo townhome townhouse property listing place lot unit apartment duplex
    mom dad wife husband son daughter partner fiance friend neighbor
    call text email phone number cell mobile me us him them
    monday tuesday wednesday thursday friday saturday sunday today tomorrow tonight morning afternoon evening
    january february march april may june july august september october november december
    best regards cheers sincerely sent from iphone android ipad mobile phone device outlook gmail
    we're i'm you're they're we've i've it's that's ty thx tia thnx hoa mls zip sq ft bed bath beds baths acre acres garage pool yard big small front desk
    realty group properties homes lending bank mortgage llc inc co corp company team studio design title
    escrow insurance capital partners associates realtors construction builders
    asap pls plz lol tho tmrw tmr u ur yo btw fyi np k yes no nope yep shes hes ill dont cant wont im ive
    again calling texting around already anyway soon later asap urgent important perfect awesome amazing
    beautiful gorgeous nice cool hot cold sunny raining crazy weird funny true correct right wrong bad easy
    hard tough expensive cheap affordable pricey big huge tiny old fine same different possible confirmed
    scheduled booked sold pending gone taken listed still too also only even both either neither
    de del la el los las y en con por para un una muy que su mi tu es soy estoy busco hola gracias casa
    saludos buenas buenos dias tardes noches se le lo al nos
    outside inside upstairs downstairs nearby summer winter spring fall autumn weekend weekday raining snowing
    zelle venmo paypal cashapp wire offer offers counteroffer contract addendum appraisal inspection
    """.split()
) | frozenset(_SUFFIX_WORDS) | frozenset(_ID_WORDS) | frozenset(("ph", "tel", "desk", "main", "direct", "whatsapp"))

#: nouns that follow "ask for" / "speak to" but are not names
NOT_NAMES = frozenset(
    """
    help details detail info information directions pics photos pictures price pricing disclosures docs
    documents more access keys key approval extension discount credit repairs feedback showing tour
    update updates everything anything something someone somebody anyone anybody nobody everyone
    seller sellers buyer buyers owner owners agent agents management manager front desk leasing office
    maintenance lender appraisal inspection survey copy copies receipt receipts refund money deposit
    paperwork contract contracts offer offers counter terms hours time times availability address
    """.split()
)

# any script's letters: "José", "Vázquez", "Nguyễn"
_NAME_WORD = r"\p{L}[\p{L}'\-]{1,24}"
_NAME = rf"(?<v>{_NAME_WORD}(?:[ \t]+(?:\p{{L}}\.?[ \t]+)?{_NAME_WORD}){{0,2}})"
# a capitalized name word: "Priya", "O'Brien-Walsh", "D'Andre", "McAllister", "Min-jun", "Ramírez"
_TITLE_WORD = r"(?:O'|D'|Mc|Mac)?\p{Lu}\p{Ll}+(?:['\-]\p{L}\p{Ll}*)*"
_PHONE_AHEAD = r"(?=\+?1?[ \t.\-]?\(?\d{3}\)?[ \t.\-]*\d{3}[ \t.\-]*\d{4}(?!\d))"
_PHONE_BEHIND = r"(?<=\d{3}[ \t.\-]*\d{4}(?:[ \t]*(?:x|ext\.?)[ \t]*\d{1,5})?)"
#: a single lower-case word after a strong intro counts when the name is clearly over after it
_AFTER_SINGLE = regex.compile(
    r"[ \t]*(?:[,.!?;:\-\u2013\u2014)]|\r?\n|\Z|(?:from|here|again|calling|texting|call|text|w/|with|at|"
    r"re|regarding|about|when|if|or|to|pls|please|tmrw|tomorrow|today|tonight|will|is|can|said|wants|"
    r"would|should|has|might)\b)",
    regex.IGNORECASE,
)
_SIGNOFF = (
    r"(?:thanks|thank\s+you|thank\s+u|thx|thnx|ty|tia|regards|best\s+regards|kind\s+regards|warm\s+regards|warmly|best|cheers|"
    r"sincerely|respectfully|talk\s+soon|take\s+care|all\s+the\s+best|many\s+thanks|yours(?:\s+truly)?|"
    # Spanish / French
    r"saludos|un\s+saludo|gracias|muchas\s+gracias|atentamente|cordialmente|bendiciones|merci|cordialement|"
    r"bien\s+[àa]\s+vous)"
)


class LeadPersonCueRecognizer(GuardedPatternRecognizer):
    """Names introduced by cues ("this is ...", "my name is ...", "its mike davis") and sign-offs.

    Catches lower-case and ALL CAPS names that the statistical NER model misses in SMS.
    """

    def __init__(self, timeout_s: float = 1.0) -> None:
        t = _TITLE_WORD
        rules = [
            Rule(
                "intro",
                r"\b(?:this\s+is|my\s+name\s+is|my\s+name's|it'?s|it\s+is|i\s+am|i'm|im|names|here\s+is|"
                r"(?:his|her|their|our)\s+names?\s+(?:is|are)|names\s+are|me\s+llamo|mi\s+nombre\s+es|soy|"
                rf"je\s+m'appelle)[ \t]+{_NAME}",
                0.75,
            ),
            Rule("signoff", rf"(?:^|[\n.!?]\s*){_SIGNOFF}[ \t]*[,!.\-]*[ \t]*(?:\r?\n[ \t]*)+{_NAME}[ \t]*(?:$|\r?\n|,)", 0.8),
            Rule("signoff-inline", rf"\b{_SIGNOFF}[ \t]*[,!.]*[ \t]*[\-\u2013\u2014~][ \t]*{_NAME}[ \t]*$", 0.8),
            Rule("dash-signature", rf"(?:^|\n)[ \t]*(?:--|\u2014|\u2013|-|~)[ \t]*{_NAME}[ \t]*$", 0.75),
            Rule("x-here", rf"(?:^|\b(?:hi|hey|hello)[,!.]?[ \t]+){_NAME}[ \t]+here\b", 0.7),
            Rule("signoff-same-line", rf"\b{_SIGNOFF}[ \t]*[,!.]+[ \t]*{_NAME}[ \t]*[.!]?[ \t]*\Z", 0.75),
            Rule(
                "label",
                r"\b(?:name|full\s+name|contact\s+name|contact|client|buyer|seller|tenant|lead|customer|borrower|"
                r"co-?borrower|applicant|caller|nombre|cliente)[ \t]*:\s*"
                rf"(?<v>{_NAME_WORD}(?:[ \t]+{_NAME_WORD}){{0,2}}(?:,[ \t]*{_NAME_WORD}(?:[ \t]+{_NAME_WORD})?)?)",
                0.75,
            ),
            Rule("dash-end", rf"[ \t](?:--|\u2014|\u2013|-|~)[ \t]*{_NAME}[ \t]*[.!]?[ \t]*\Z", 0.75),
            # "jessica ortiz gave me ur number": a name at the start of a clause, then a referral verb
            Rule(
                "subject-verb-lower",
                rf"(?:^|[.!?\n][ \t]*){_NAME}[ \t]+(?:referred|recommended|gave[ \t]+me|told[ \t]+me|suggested|"
                r"sent[ \t]+me|passed[ \t]+along)\b",
                0.7,
            ),
            # e-mail style headers: "From: Hector Salinas", "To: ..."
            Rule("header", rf"(?:^|\n)[ \t]*(?:from|to|cc|sender|reply-to)[ \t]*:[ \t]*\"?{_NAME}", 0.7),
            # "ask for tom", "talk to jim": one lower-case word, checked against NOT_NAMES below
            Rule("ask-lower", r"\b(?:ask\s+for|speak\s+(?:to|with)|talk\s+(?:to|with)|tell|cc)[ \t]+(?<v>\p{Ll}[\p{Ll}'\-]{1,20})\b", 0.65),
        ]
        title_name = rf"(?<v>(?:{t}|\p{{Lu}}\.)(?:[ \t]+\p{{Lu}}\.?)?(?:[ \t]+{t}){{1,2}})"
        title_1_3 = rf"(?<v>{t}(?:[ \t]+\p{{Lu}}\.)?(?:[ \t]+{t}){{0,2}})"
        rules += [
            Rule("dash-title", r"[ \t](?:-|--|\u2013|\u2014|~)[ \t]*" + title_name + r"(?![\w'\-])", 0.7, case_sensitive=True),
            Rule("last-line-title", r"\S[ \t]*(?:\r?\n[ \t]*)+" + title_name + r"[ \t]*\s*\Z", 0.6, case_sensitive=True),
            Rule(
                "relation",
                r"(?i:\b(?:partner|wife|husband|spouse|fianc[eé]e?|agent|realtor|"
                r"lender|loan[ \t]+officer|attorney|lawyer|friend|son|daughter|mom|mother|dad|father|brother|sister|"
                r"boss|co-?signer|co-?buyer|coworker|colleague|neighbou?r|tenant|landlord|broker|assistant|cpa|"
                r"accountant|esposa|esposo|hijo|hija|mam[aá]|pap[aá]|hermano|hermana|suegra|suegro)(?:[ \t]+de)?)[ \t,(]+"
                + title_1_3 + r"(?![\w'\-])",
                0.7,
                case_sensitive=True,
            ),
            Rule(
                "subject-verb",
                r"(?<![\w.])" + title_name + r"(?i:[ \t]+(?:referred|recommended|gave[ \t]+me|told[ \t]+me|suggested|"
                r"sent[ \t]+me|said|mentioned|will|wants|would[ \t]+like|and[ \t]+I|&[ \t]+I))\b",
                0.7,
                case_sensitive=True,
            ),
            # "my wife jenny will be there": one lower-case word, then a verb or the end of the clause
            Rule(
                "relation-lower",
                r"\b(?:my|our|his|her)[ \t]+(?:partner|wife|husband|spouse|fianc[eé]e?|son|daughter|mom|dad|brother|"
                r"sister|friend|lender|agent|realtor)[ \t,]+(?<v>\p{Ll}[\p{Ll}'\-]{1,20})"
                r"(?=[ \t]*(?:[,.!?)]|$|(?:will|is|can|and|said|wants|would|should|has|might|may|was)\b))",
                0.65,
            ),
            # "Soy María Fernanda", "We're the Hendersons"
            Rule(
                "intro-title",
                r"(?i:\b(?:soy|habla|we'?re\s+the|we\s+are\s+the))[ \t]+" + title_1_3 + r"(?![\w'\-])",
                0.7,
                case_sensitive=True,
            ),
            # "text Priya", "have Marcus call me", "tell Jim", "spoke w/ Tasha", "Sent by Keisha Brown"
            Rule(
                "verb-title",
                r"(?i:\b(?:ask\s+for|text|txt|call|tell|have|cc|ping|thank|speak\s+(?:to|with)|talk\s+(?:to|with)|"
                r"spoke\s+(?:to|with|w/)|spoken\s+(?:to|with)|sent\s+by|met\s+with))[ \t]+(?<v>"
                + t + r"(?:[ \t]+" + t + r")?)(?![\w'\-])",
                0.7,
                case_sensitive=True,
            ),
            Rule(
                "with-from",
                r"(?i:(?:\bwith|\bw/))[ \t]*(?<v>" + t + r")(?=[ \t]+(?i:from|at|of)\b)",
                0.65,
                case_sensitive=True,
            ),
            # a name written right next to a phone number: "Wes 512 555 0155", "5125550177 - Kim"
            Rule(
                "before-phone",
                r"(?<![\w'])(?<v>" + t + r"(?:[ \t]+" + t + r")?)[ \t]*[:\-\u2013,]?[ \t]*" + _PHONE_AHEAD,
                0.65,
                case_sensitive=True,
            ),
            Rule(
                "after-phone",
                _PHONE_BEHIND + r"[ \t]*[\-\u2013,/][ \t]*(?<v>" + t + r"(?:[ \t]+" + t + r")?)(?![\w'\-])",
                0.65,
                case_sensitive=True,
            ),
            # couples: "Bob & Linda Chen", "Michael &amp; Tanya Okonkwo", "Pete and Maria Sandoval"
            Rule(
                "couple",
                r"(?<![\w'])(?<v>" + t + r"(?:[ \t]*&[ \t]*|[ \t]+(?i:and|y)[ \t]+)" + t + r"[ \t]+" + t + r")(?![\w'\-])",
                0.7,
                case_sensitive=True,
            ),
        ]
        rules.append(
            # "Priyanka and Dev will sign"
            Rule(
                "couple",
                r"(?<![\w'])(?<v>" + t + r"(?:[ \t]*&[ \t]*|[ \t]+(?i:and|y)[ \t]+)" + t + r")(?=[ \t]+(?i:will|are|want|wants|"
                r"would|can|have|need|plan|both|were|and[ \t]+I)\b)",
                0.7,
                case_sensitive=True,
            )
        )
        super().__init__(
            "PERSON", rules, name="LeadPersonCueRecognizer", timeout_s=timeout_s,
            prefilters={
                "before-phone": r"\d{3}[ \t.\-]*\d{4}", "after-phone": r"\d{3}[ \t.\-]*\d{4}",
                "couple": r"&|\band\b|\by\b", "last-line-title": r"\n", "signoff": r"\n",
                "dash-signature": r"[\-\u2013\u2014~]", "dash-title": r"[\-\u2013\u2014~]",
                "dash-end": r"[\-\u2013\u2014~]", "signoff-inline": r"[\-\u2013\u2014~]", "label": ":", "header": ":",
                "relation": _RELATION_HINT, "relation-lower": _RELATION_HINT,
            },
        )

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        out: list[RecognizerResult] = []
        for res in super().analyze(text, entities, nlp_artifacts, regex_flags):
            rule = res.recognition_metadata.get("rule")
            if rule == "couple":
                words = [w.strip(".,").lower() for w in regex.split(r"[ \t&]+", text[res.start : res.end]) if w]
                if not any(w in COMMON_WORDS or w in PLACE_TAIL for w in words if w not in {"and", "y"}):
                    out.append(res)
                continue
            trimmed = trim_name(text, res.start, res.end, skip_leading=rule in _SKIP_LEADING_RULES)
            if trimmed is None:
                continue
            ts, te = trimmed
            value = text[ts:te]
            if rule in _TWO_WORD_RULES and len(value.split()) < 2:
                continue
            if len(value.split()) == 1 and not value[:1].isupper():
                token = value.lower()
                if token in NOT_NAMES or (len(token) >= 6 and token.endswith("ing")):
                    continue
                # a single lower-case word after a weak cue ("i'm selling") only when the name is
                # clearly over right after it ("its becca from the open house", "ty!! - marisol")
                if rule in _LOWER_SINGLE_NEEDS_END and not _AFTER_SINGLE.match(text, te):
                    continue
            if rule in {"before-phone", "after-phone", "verb-title", "with-from"} and _ORG_AFTER.match(text, te):
                continue  # "Frost Bank", "Keller Williams Realty"
            res.start, res.end = ts, te
            out.append(res)
        return out


_RELATION_HINT = (
    r"partner|wife|husband|spouse|fianc|agent|realtor|lender|loan|attorney|lawyer|friend|son|daughter|mom|mother|"
    r"dad|father|brother|sister|boss|signer|buyer|coworker|colleague|neighbo|tenant|landlord|broker|assistant|"
    r"cpa|accountant|espos|hij|mam|pap|herman|suegr"
)
_TWO_WORD_RULES = {"dash-title", "last-line-title", "subject-verb"}
_SKIP_LEADING_RULES = {"before-phone", "after-phone"}
_LOWER_SINGLE_NEEDS_END = {"intro", "dash-end", "signoff-same-line", "label", "ask-lower", "header"}
_ORG_AFTER = regex.compile(
    r"[ \t]+(?:bank|realty|homes|group|properties|lending|mortgage|title|insurance|llc|inc|credit\s+union|"
    r"financial|capital)\b",
    regex.IGNORECASE,
)


def trim_name(text: str, start: int, end: int, *, skip_leading: bool = False) -> tuple[int, int] | None:
    """Cut a cue-captured name at the first common word; None if nothing name-like remains.

    ``skip_leading`` drops common words in front first ("Text Priya" before a phone number).
    """
    words = list(regex.finditer(r"\S+", text[start:end]))
    kept: list[Any] = []
    for w in words:
        token = w.group().strip(".,").lower()
        if len(token) == 1 and w.group().endswith(".") and token.isalpha():
            kept.append(w)  # an initial: "J. Alvarez", "M. Okafor"
            continue
        if token in COMMON_WORDS or len(token) < 2 and not (kept and len(token) == 1):
            if skip_leading and not kept:
                continue
            break
        kept.append(w)
    while kept and len(kept[-1].group().strip(".,")) == 1:
        kept.pop()  # a trailing initial alone is not worth a placeholder
    if not kept:
        return None
    return start + kept[0].start(), start + kept[-1].end()


#: last words that make a capitalized phrase a place, not a person (no common surnames: Park, Lane,
#: Hill, Ford, Woods ... stay names)
PLACE_TAIL = frozenset(
    """
    st rd ave av ln dr blvd ct pl cir trl pkwy ter hwy xing cv pt expy fwy plz hts cres tpke rte
    street avenue boulevard drive road parkway highway creek heights ranch trail cove crossing estates
    village plaza terrace hollow canyon springs elementary middle school academy isd university college
    church hospital apartments subdivision lofts commons bend mill
    """.split()
)
_PLACE_AFTER = regex.compile(
    r"[ \t]+(?:open[ \t]+house|listing|listings|area|neighbou?rhood|subdivision|community|elementary|middle|"
    r"high[ \t]+school|school|isd|one|home|homes|house|property|model|location|development|project|zip|plan|"
    r"floor[ \t]*plan|floorplan|elevation|phase|section|condos|townhomes|apartments|builder|build)\b",
    regex.IGNORECASE,
)


_NEXT_TITLE = regex.compile(rf"[ \t]+{_TITLE_WORD}(?![\w'\-])")


class LeadSpacyPersonRecognizer(EntityRecognizer):
    """PERSON entities from the spaCy model (via Presidio's NlpArtifacts), filtered for lead chatter."""

    _BAD = regex.compile(r"\d|@|https?:|[<>{}\[\]=_/\\]")

    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], name="LeadSpacyPersonRecognizer", supported_language="en")

    def load(self) -> None:  # nothing to load: the NlpEngine owns the model
        return None

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        if nlp_artifacts is None:
            return results
        for ent in nlp_artifacts.entities:
            if ent.label_ not in {"PERSON", "PER"}:
                continue
            value = ent.text
            if self._BAD.search(value):
                continue
            words = [w.strip(".,'").lower() for w in value.split()]
            if not words or all(w in COMMON_WORDS or len(w) < 2 for w in words):
                continue
            # street, school and subdivision names the small model calls PERSON ("Lamar Blvd",
            # "Doss Elementary", "Bouldin Creek"), and places used as a modifier ("the Mueller open house")
            if words[-1] in PLACE_TAIL or _PLACE_AFTER.match(text, ent.end_char):
                continue
            end = ent.end_char
            # the small model often stops before a surname it does not know ("Anita" | "Desai")
            for m in _NEXT_TITLE.finditer(text, end):
                if m.start() != end or m.group().strip().lower() in COMMON_WORDS | PLACE_TAIL:
                    break
                end = m.end()
            results.append(
                RecognizerResult(
                    "PERSON",
                    ent.start_char,
                    end,
                    0.85,
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: "LeadSpacyPersonRecognizer",
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                    },
                )
            )
        return results


def default_recognizers(timeout_s: float = 1.0, *, ner: bool) -> list[EntityRecognizer]:
    """The explicit recognizer list (no Presidio defaults: no UK_NHS, US_DRIVER_LICENSE, ...)."""
    recs: list[EntityRecognizer] = [
        LeadEmailRecognizer(timeout_s),
        LeadCredentialRecognizer(timeout_s),
        LeadCreditCardRecognizer(timeout_s),
        LeadSsnRecognizer(timeout_s),
        LeadAbaRoutingRecognizer(timeout_s),
        LeadBankAccountRecognizer(timeout_s),
        LeadPhoneRecognizer(timeout_s),
        LeadDateOfBirthRecognizer(timeout_s),
        LeadStreetAddressRecognizer(timeout_s),
        LeadIpAddressRecognizer(timeout_s),
        LeadPiiUrlRecognizer(timeout_s),
        LeadPersonCueRecognizer(timeout_s),
    ]
    if ner:
        recs.append(LeadSpacyPersonRecognizer())
    return recs


def entities_of(recognizers: Iterable[EntityRecognizer]) -> list[str]:
    seen: dict[str, None] = {}
    for r in recognizers:
        for e in r.supported_entities:
            seen[e] = None
    return list(seen)
