"""Keyed pseudonyms: the same value maps to the same token within a tenant, never across tenants.

HMAC-SHA256 over ``tenant \\x1f kind \\x1f normalized value`` with the pseudonym key. Values are
normalized first (case, whitespace, phone punctuation) so "(512) 555-0147" and "512.555.0147" agree.
"""

from __future__ import annotations

import hashlib
import hmac
import re

PSEUDONYM_HEX_CHARS = 12
_NON_DIGIT = re.compile(r"\D+")
_SPACE = re.compile(r"\s+")


def normalize(kind: str, value: str) -> str:
    """Canonical form of a PII value before it is pseudonymized."""
    v = value.strip()
    if kind in {"PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "US_BANK_NUMBER", "ABA_ROUTING_NUMBER"}:
        digits = _NON_DIGIT.sub("", v)
        if kind == "PHONE_NUMBER" and len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        return digits or v.lower()
    return _SPACE.sub(" ", v).lower()


def pseudonym(key: bytes, tenant: str, kind: str, value: str) -> str:
    """Hex pseudonym (12 chars, 48 bits) of ``value`` of entity ``kind`` for ``tenant``."""
    msg = "\x1f".join((tenant, kind, normalize(kind, value))).encode("utf-8")
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:PSEUDONYM_HEX_CHARS]


def placeholder(key: bytes, tenant: str, kind: str, value: str) -> str:
    """Typed placeholder such as ``<PHONE_NUMBER:1e0b07a93c2d>``."""
    return f"<{kind}:{pseudonym(key, tenant, kind, value)}>"


def pseudonymize_id(key: bytes, tenant: str, ident: str) -> str:
    """Pseudonym of an identifier (contact id) for audit records and logs."""
    return pseudonym(key, tenant, "ID", ident)
