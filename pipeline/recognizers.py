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
    ) -> None:
        self.rules = list(rules)
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

    def vetoed(self, text: str, start: int) -> bool:
        if self._neg is None:
            return False
        return bool(self._neg.search(text[max(0, start - 24) : start], timeout=self.timeout_s))

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
        for rule, rx in self._compiled:
            try:
                for m in rx.finditer(text, timeout=self.timeout_s):
                    if "v" in rx.groupindex and m.group("v") is not None:
                        start, end = m.span("v")
                    else:
                        start, end = m.span()
                    if start >= end:
                        continue
                    if rule.needs_cue and not self.has_cue(text, start, end):
                        continue
                    if self.vetoed(text, start):
                        continue
                    if not self.check(text[start:end], rule):
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
                    r"(?<![\w.%+-])[a-z0-9][a-z0-9._%+'-]{0,63}@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b",
                    0.95,
                ),
                Rule(
                    "email-obfuscated",
                    r"(?<![\w.%+-])[a-z0-9][a-z0-9._%+-]{0,63}\s*(?:\(at\)|\[at\]|\{at\}|\s+at\s+)\s*"
                    r"[a-z0-9-]+(?:\s*(?:\.|\(dot\)|\[dot\]|\s+dot\s+)\s*[a-z0-9-]+)*?"
                    r"\s*(?:\.|\(dot\)|\[dot\]|\s+dot\s+)\s*(?:com|org|net|edu|gov|io|co|us|info|biz)\b",
                    0.8,
                ),
            ],
            name="LeadEmailRecognizer",
            timeout_s=timeout_s,
        )


# --------------------------------------------------------------------------- phone

PHONE_CUE = _words(
    "call", "calls", "calling", "text", "texts", "txt", "phone", "ph", "cell", "cellphone", "mobile", "mob",
    "number", "num", "no", "tel", "telephone", "fax", "office", "reach", "contact", "dial", "sms",
    "whatsapp", "line", "direct", "home", "work", "ring", "voicemail", "vm", "c", "m", "o", "p",
)
NUMBER_VETO = _words(
    "order", "invoice", "mls", "form", "confirmation", "conf", "ticket", "ref", "reference", "case",
    "account", "acct", "routing", "aba", "ssn", "social", "id", "tracking", "lot", "parcel", "apn",
    "permit", "policy", "loan", "claim", "receipt", "transaction", "txn",
) + r"\s*(?:#|no\.?|number|num)?\s*:?"
_SEP = r"[ \t.\-/\u2010-\u2015\u2212]"
_EXT = r"(?:\s*(?:x|ext\.?|extension|#)\s*\d{1,5}\b)?"


class LeadPhoneRecognizer(GuardedPatternRecognizer):
    """US/NANP phones by pattern, international phones via ``phonenumbers``."""

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
            Rule("us-bare", r"(?<![\d+#$.,])1?\d{10}(?!\d|[,.]\d)", 0.75, needs_cue=True),
            # 555-0123 (7-digit local) needs a cue
            Rule("us-local", rf"(?<![\d\-.])\d{{3}}{_SEP}\d{{4}}(?![\d\-.]\d)", 0.7, needs_cue=True),
            # +52 55 1234 5678 / 0044 20 7946 0958 (validated by phonenumbers)
            Rule("intl", r"(?<![\w+])(?:\+|00)[1-9][\d \t().\-]{6,20}\d(?!\d)", 0.85),
            # French national format 01 23 45 67 89 (validated by phonenumbers)
            Rule("fr-national", r"(?<!\d)0[1-9](?:[ .]\d{2}){4}(?!\d)", 0.8),
        ]
        super().__init__(
            "PHONE_NUMBER", rules, name="LeadPhoneRecognizer", cue=PHONE_CUE, negative_cue=NUMBER_VETO,
            cue_before=32, cue_after=24, timeout_s=timeout_s,
        )

    def check(self, value: str, rule: Rule) -> bool:
        digits = "".join(ch for ch in value if ch.isdigit())
        if rule.name in {"us-formatted", "us-e164", "us-bare"}:
            core = digits[1:] if len(digits) == 11 and digits.startswith("1") else digits
            if "x" in value.lower() or "#" in value:
                core = core[:10]
            # NANP: area code and exchange do not start with 0 or 1
            return len(core) >= 10 and core[0] not in "01" and core[3] not in "01"
        if rule.name == "us-local":
            return digits[0] not in "01"
        if rule.name == "intl":
            cand = "+" + value.lstrip("+")[2:] if value.startswith("00") else value
            try:
                num = phonenumbers.parse(cand, None)
            except phonenumbers.NumberParseException:
                return False
            return phonenumbers.is_valid_number(num)
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
            [Rule("card", r"(?<![\d.,$])\d(?:[ \-]?\d){12,18}(?!\d|[,.]\d)", 0.9)],
            name="LeadCreditCardRecognizer",
            timeout_s=timeout_s,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = "".join(ch for ch in pattern_text if ch.isdigit())
        return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn_ok(digits)


# --------------------------------------------------------------------------- SSN

SSN_CUE = _words("ssn", "ss#", "ss", "social", "security", "tin", "itin", "taxpayer", "soc", "sin")
_DASH = r"[\-\u2010-\u2015\u2212\u2043\ufe58\ufe63\uff0d]"


class LeadSsnRecognizer(GuardedPatternRecognizer):
    def __init__(self, timeout_s: float = 1.0) -> None:
        super().__init__(
            "US_SSN",
            [
                Rule("ssn-dashed", rf"(?<![\d\-.])\d{{3}}{_DASH}\d{{2}}{_DASH}\d{{4}}(?![\d\-]|\.\d)", 0.85),
                Rule("ssn-spaced", r"(?<![\d.])\d{3} \d{2} \d{4}(?![\d]| \d)", 0.6, needs_cue=True),
                Rule("ssn-dotted", r"(?<![\d.])\d{3}\.\d{2}\.\d{4}(?![\d.])", 0.6, needs_cue=True),
                Rule("ssn-bare", r"(?<![\d.,$#])\d{9}(?!\d|[,.]\d)", 0.7, needs_cue=True),
            ],
            name="LeadSsnRecognizer",
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


class LeadAbaRoutingRecognizer(GuardedPatternRecognizer):
    def __init__(self, timeout_s: float = 1.0) -> None:
        super().__init__(
            "ABA_ROUTING_NUMBER",
            [Rule("aba", r"(?<![\d.,$])\d{9}(?!\d|[,.]\d)", 0.85, needs_cue=True)],
            name="LeadAbaRoutingRecognizer",
            cue=_words("routing", "aba", "rtn", "transit", "wire", "wiring", "bank", "r/t", "rt", "abartn"),
            cue_before=40,
            cue_after=20,
            timeout_s=timeout_s,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        return aba_ok(pattern_text)


class LeadBankAccountRecognizer(GuardedPatternRecognizer):
    def __init__(self, timeout_s: float = 1.0) -> None:
        super().__init__(
            "US_BANK_NUMBER",
            [
                Rule(
                    "account",
                    r"(?<=\b(?:account|acct|acc|a/c|checking|savings|iban|beneficiary)\b(?:\s*(?:number|no\.?|num|#))?(?:\s+(?:is|was|will\s+be))?\s*[:#=-]?\s*)(?<v>[a-z]{0,4}\d(?:-?\d){5,33})(?!\d|[,.]\d)",
                    0.85,
                ),
            ],
            name="LeadBankAccountRecognizer",
            timeout_s=timeout_s,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        digits = sum(ch.isdigit() for ch in pattern_text)
        return 6 <= digits <= 34


# --------------------------------------------------------------------------- DOB

_MONTH = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|jun(?:e)?|jul(?:y)?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
_DATE = (
    r"(?:\d{1,2}[/\-.]\d{1,2}[/\-.](?:19|20)?\d{2}"
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
            cue=r"\b(?:dob|d\.o\.b\.?|born|birthday|bday|b-day|birthdate|birth\s*date|date\s+of\s+birth)(?!\w)",
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
_UNIT = r"(?:,?\s*(?:apt|apartment|unit|suite|ste|#|bldg|building|fl|floor|rm|room|lot)\.?\s*#?\s*[a-z0-9\-]{1,6}\b)?"


class LeadStreetAddressRecognizer(GuardedPatternRecognizer):
    """House number + street name (1-4 words) + suffix, optional direction and unit."""

    def __init__(self, timeout_s: float = 1.0) -> None:
        street = (
            rf"(?<![\w$#.,/\-])\d{{1,6}}[a-z]?(?:-\d{{1,4}})?\s+(?:{_DIR}\s+)?"
            rf"(?:(?!{_STOP}\b)[a-z0-9][a-z0-9'.\-]*\s+){{1,4}}?{_SUFFIX}\b\.?(?:\s+{_DIR}(?![\w]))?{_UNIT}"
        )
        super().__init__(
            "STREET_ADDRESS",
            [
                Rule("street", street, 0.8),
                Rule("po-box", r"\bp\.?\s?o\.?\s*box\s+\d{1,6}\b", 0.85),
            ],
            name="LeadStreetAddressRecognizer",
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
            Rule("bearer", r"\b(?:bearer|token|basic)\s+(?<v>[a-z0-9._~+/=\-]{12,})", 0.9),
            Rule("stripe-like", r"\b(?:sk|pk|rk)_(?:live|test)_[a-z0-9]{8,}\b", 0.95),
            Rule("openai-like", r"\bsk-(?:proj-)?[a-z0-9_\-]{20,}\b", 0.9),
            Rule("github", r"\bgh[pousr]_[a-z0-9]{30,}\b", 0.95),
            Rule("slack", r"\bxox[abposr]-[a-z0-9\-]{10,}\b", 0.95),
            Rule("aws", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0.95, case_sensitive=True),
            Rule("jwt", r"\beyJ[a-z0-9_\-]{5,}\.eyJ[a-z0-9_\-]{5,}\.[a-z0-9_\-]{10,}", 0.95),
            Rule(
                "password",
                r"\b(?:password|passwd|passcode|pwd|pw|pin|passphrase|login\s+code|gate\s+code|lockbox\s+code|door\s+code)"
                r"(?:\s+(?:is|was|will\s+be))?\s*[:=\-]?\s*(?<v>[^\s,;\"'<>]{3,64})",
                0.9,
            ),
            Rule("pass-label", r"\b(?:pass|pword|p/w)\s*[:=]\s*(?<v>[^\s,;\"'<>]{3,64})", 0.9),
            Rule(
                "kv-secret",
                r"\b(?:api[_\-]?key|apikey|access[_\-]?token|auth[_\-]?token|secret|client[_\-]?secret|private[_\-]?key|x-api-key)"
                r"[\"']?\s*[:=]\s*[\"']?(?<v>[^\s\"'&,;<>]{8,})",
                0.9,
            ),
            Rule("high-entropy", r"(?<![\w\-/.])[a-z0-9_\-+]{32,}={0,2}(?![\w\-/])", 0.75),
        ]
        super().__init__("CREDENTIAL", rules, name="LeadCredentialRecognizer", timeout_s=timeout_s)

    def check(self, value: str, rule: Rule) -> bool:
        if rule.name == "password":
            return value.lower() not in {"is", "reset", "manager", "protected", "required", "please", "code", "number"}
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
    """.split()
) | frozenset(_SUFFIX_WORDS)

_NAME_WORD = r"[a-z][a-z'\-]{1,24}"
_NAME = rf"(?<v>{_NAME_WORD}(?:[ \t]+(?:[a-z]\.?[ \t]+)?{_NAME_WORD}){{0,2}})"
_SIGNOFF = (
    r"(?:thanks|thank\s+you|thank\s+u|thx|thnx|ty|tia|regards|best\s+regards|kind\s+regards|warm\s+regards|warmly|best|cheers|"
    r"sincerely|respectfully|talk\s+soon|take\s+care|all\s+the\s+best|many\s+thanks|yours(?:\s+truly)?)"
)


class LeadPersonCueRecognizer(GuardedPatternRecognizer):
    """Names introduced by cues ("this is ...", "my name is ...", "its mike davis") and sign-offs.

    Catches lower-case and ALL CAPS names that the statistical NER model misses in SMS.
    """

    def __init__(self, timeout_s: float = 1.0) -> None:
        rules = [
            Rule(
                "intro",
                rf"\b(?:this\s+is|my\s+name\s+is|my\s+name's|it'?s|it\s+is|i\s+am|i'm|im|names|here\s+is)[ \t]+{_NAME}",
                0.75,
            ),
            Rule("signoff", rf"(?:^|[\n.!?]\s*){_SIGNOFF}[ \t]*[,!.\-]*[ \t]*(?:\r?\n[ \t]*)+{_NAME}[ \t]*(?:$|\r?\n|,)", 0.8),
            Rule("signoff-inline", rf"\b{_SIGNOFF}[ \t]*[,!.]?[ \t]*[\-\u2013\u2014~][ \t]*{_NAME}[ \t]*$", 0.8),
            Rule("dash-signature", rf"(?:^|\n)[ \t]*(?:--|\u2014|\u2013|-|~)[ \t]*{_NAME}[ \t]*$", 0.75),
            Rule("x-here", rf"(?:^|\b(?:hi|hey|hello)[,!.]?[ \t]+){_NAME}[ \t]+here\b", 0.7),
            Rule("signoff-same-line", rf"\b{_SIGNOFF}[ \t]*[,!.]+[ \t]*{_NAME}[ \t]*[.!]?[ \t]*\Z", 0.75),
            Rule("label", rf"\b(?:name|full\s+name|contact\s+name|client|buyer|seller|tenant)[ \t]*:\s*{_NAME}", 0.75),
            Rule("dash-end", rf"[ \t](?:--|\u2014|\u2013|-|~)[ \t]*{_NAME}[ \t]*[.!]?[ \t]*\Z", 0.75),
        ]
        title_name = r"(?<v>[A-Z][a-z'\-]+(?:[ \t]+[A-Z]\.?)?(?:[ \t]+(?:Mc|Mac|O')?[A-Z][a-z'\-]+){1,2})"
        rules += [
            Rule("dash-title", r"[ \t](?:-|--|\u2013|\u2014|~)[ \t]*" + title_name + r"(?![\w'\-])", 0.7, case_sensitive=True),
            Rule("last-line-title", r"\S[ \t]*(?:\r?\n[ \t]*)+" + title_name + r"[ \t]*\s*\Z", 0.6, case_sensitive=True),
            Rule(
                "relation",
                r"(?i:\b(?:my|our)[ \t]+(?:partner|wife|husband|spouse|fianc[eé]e?|agent|realtor|lender|loan[ \t]+officer|"
                r"attorney|lawyer|friend|son|daughter|mom|mother|dad|father|brother|sister|boss|co-?signer|"
                r"co-?buyer|coworker|colleague|neighbou?r|tenant|landlord|broker|assistant|cpa|accountant))[ \t,]+"
                + title_name,
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
        ]
        super().__init__("PERSON", rules, name="LeadPersonCueRecognizer", timeout_s=timeout_s)

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
            trimmed = trim_name(
                text, res.start, res.end, intro=rule in {"intro", "dash-end", "signoff-same-line", "label"}
            )
            if trimmed is not None and rule in _TWO_WORD_RULES and len(text[trimmed[0] : trimmed[1]].split()) < 2:
                continue
            if trimmed is not None:
                res.start, res.end = trimmed
                out.append(res)
        return out


_TWO_WORD_RULES = {"dash-title", "last-line-title", "relation", "subject-verb"}


def trim_name(text: str, start: int, end: int, *, intro: bool) -> tuple[int, int] | None:
    """Cut a cue-captured name at the first common word; None if nothing name-like remains."""
    words = list(regex.finditer(r"\S+", text[start:end]))
    kept: list[Any] = []
    for w in words:
        token = w.group().strip(".,").lower()
        if token in COMMON_WORDS or len(token) < 2 and not (kept and len(token) == 1):
            break
        kept.append(w)
    if not kept:
        return None
    first = kept[0].group()
    # single lower-case word after a weak cue ("i'm selling") is too ambiguous unless it looks like a name
    if intro and len(kept) == 1 and not first[:1].isupper():
        return None
    return start + kept[0].start(), start + kept[-1].end()


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
            results.append(
                RecognizerResult(
                    "PERSON",
                    ent.start_char,
                    ent.end_char,
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
