"""Every verification scheme as a pure function: good and bad signatures, lengths, encodings, vectors."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.datastructures import Headers

from ghl_intake.settings import DEFAULT_GHL_ED25519_PEM, DEFAULT_GHL_RSA_PEM
from ghl_intake.signing import (
    GhlRsaSigner,
    GhlSigner,
    hmac_signature,
    standard_headers,
    standard_signature,
)
from ingress import schemes
from ingress.schemes import TenantSecrets, decode_whsec, token_hash, verify_tenant
from ingress.verify import (
    decode_b64_signature,
    fingerprint,
    load_ed25519_keys,
    load_rsa_keys,
    verify_ghl,
)

KEYS_DIR = Path(__file__).parent / "fixtures" / "ghl-keys"
VECTORS = json.loads((Path(__file__).parent / "fixtures" / "standard-webhooks" / "vectors.json").read_text())
BODY = b'{"type":"ContactCreate","locationId":"loc1","id":"c1"}'
GHL_RSA_FPR = "2f62045d413b1b7747e26770ce7f57840cbf86288cd20ceb90d299a62501fd25"
GHL_ED_FPR = "5a2c1b2749d3efcc233fb27d4ab43d56b8d20818c42cd226f6c9a3ff20d3097c"


@pytest.fixture(scope="module")
def rsa_signer() -> GhlRsaSigner:
    return GhlRsaSigner()


def _pub(signer: GhlSigner) -> list:  # type: ignore[type-arg]
    return load_ed25519_keys(signer.public_pem, DEFAULT_GHL_ED25519_PEM)


# ------------------------------------------------------------------------------------ GHL keys


def test_published_ghl_keys_are_the_defaults_with_the_documented_fingerprints() -> None:
    rsa_default = load_rsa_keys("", DEFAULT_GHL_RSA_PEM)
    assert [fingerprint(k) for k in rsa_default] == [GHL_RSA_FPR]
    assert rsa_default[0].key_size == 4096
    assert [fingerprint(k) for k in load_rsa_keys(str(KEYS_DIR / "x-wh-signature.rsa.pem"), DEFAULT_GHL_RSA_PEM)] \
        == [GHL_RSA_FPR]
    assert [fingerprint(k) for k in load_ed25519_keys("", DEFAULT_GHL_ED25519_PEM)] == [GHL_ED_FPR]
    assert [fingerprint(k) for k in load_ed25519_keys(str(KEYS_DIR / "x-ghl-signature.ed25519.pem"),
                                                      DEFAULT_GHL_ED25519_PEM)] == [GHL_ED_FPR]


def test_several_ed25519_keys_from_concatenated_pem_or_paths(tmp_path: Path) -> None:
    a, b = GhlSigner(), GhlSigner()
    keys = load_ed25519_keys(a.public_pem + b.public_pem, DEFAULT_GHL_ED25519_PEM)
    assert len(keys) == 2
    pa, pb = tmp_path / "a.pem", tmp_path / "b.pem"
    pa.write_text(a.public_pem)
    pb.write_text(b.public_pem)
    assert [fingerprint(k) for k in load_ed25519_keys(f"{pa};{pb}", DEFAULT_GHL_ED25519_PEM)] == \
        [fingerprint(k) for k in keys]
    for s in (a, b):  # rotation: either key verifies
        assert verify_ghl([s.sign(BODY)], [], BODY, keys).ok
    assert not verify_ghl([GhlSigner().sign(BODY)], [], BODY, keys).ok


def test_wrong_key_types_are_refused_at_load(rsa_signer: GhlRsaSigner) -> None:
    with pytest.raises(ValueError, match="not Ed25519"):
        load_ed25519_keys(rsa_signer.public_pem, DEFAULT_GHL_ED25519_PEM)
    with pytest.raises(ValueError, match="not RSA"):
        load_rsa_keys(GhlSigner().public_pem, DEFAULT_GHL_RSA_PEM)
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(ValueError, match="RSA-4096"):
        load_rsa_keys(GhlRsaSigner(small).public_pem, DEFAULT_GHL_RSA_PEM)
    with pytest.raises(ValueError, match="no PEM"):
        load_ed25519_keys("-----BEGIN NOTHING-----", DEFAULT_GHL_ED25519_PEM)


# ------------------------------------------------------------------------------------ Ed25519 + RSA


def test_ed25519_good_bad_tampered_missing() -> None:
    s = GhlSigner()
    keys = _pub(s)
    assert verify_ghl([s.sign(BODY)], [], BODY, keys).ok
    assert verify_ghl([s.sign(BODY)], [], BODY + b" ", keys).reason == "bad signature"
    assert verify_ghl([GhlSigner().sign(BODY)], [], BODY, keys).reason == "bad signature"
    assert verify_ghl([], [], BODY, keys).reason == "missing signature"
    assert verify_ghl(["", ], [], BODY, keys).reason == "malformed signature"
    assert verify_ghl([s.sign(BODY), s.sign(BODY)], [], BODY, keys).reason == "duplicated signature header"


def test_legacy_rsa_off_by_default_on_by_setting(rsa_signer: GhlRsaSigner) -> None:
    rsa_keys = load_rsa_keys(rsa_signer.public_pem, DEFAULT_GHL_RSA_PEM)
    ed = _pub(GhlSigner())
    sig = rsa_signer.sign(BODY)
    off = verify_ghl([], [sig], BODY, ed, rsa_keys)
    assert (off.ok, off.reason) == (False, "legacy signature disabled")
    on = verify_ghl([], [sig], BODY, ed, rsa_keys, legacy_rsa=True)
    assert (on.ok, on.scheme) == (True, "ghl-rsa")
    assert verify_ghl([], [sig], BODY + b"x", ed, rsa_keys, legacy_rsa=True).reason == "bad signature"
    assert verify_ghl([], [sig, sig], BODY, ed, rsa_keys, legacy_rsa=True).reason == "duplicated signature header"
    # GHL's real published key does not verify our signature
    ghl_rsa = load_rsa_keys("", DEFAULT_GHL_RSA_PEM)
    assert verify_ghl([], [sig], BODY, ed, ghl_rsa, legacy_rsa=True).reason == "bad signature"


def test_rsa_is_never_consulted_when_x_ghl_signature_is_present(rsa_signer: GhlRsaSigner) -> None:
    rsa_keys = load_rsa_keys(rsa_signer.public_pem, DEFAULT_GHL_RSA_PEM)
    s = GhlSigner()
    good_rsa = rsa_signer.sign(BODY)
    for bad_ed in ("garbage", GhlSigner().sign(BODY), ""):
        v = verify_ghl([bad_ed], [good_rsa], BODY, _pub(s), rsa_keys, legacy_rsa=True)
        assert not v.ok and v.scheme == "ghl-ed25519"
    # and a valid Ed25519 with a garbage legacy header passes on Ed25519
    v = verify_ghl([s.sign(BODY)], ["garbage"], BODY, _pub(s), rsa_keys, legacy_rsa=True)
    assert (v.ok, v.scheme) == (True, "ghl-ed25519")


def test_length_is_decided_by_the_header(rsa_signer: GhlRsaSigner) -> None:
    rsa_keys = load_rsa_keys(rsa_signer.public_pem, DEFAULT_GHL_RSA_PEM)
    s = GhlSigner()
    ed = _pub(s)
    # an RSA signature in the Ed25519 header and the other way round: wrong length -> malformed
    assert verify_ghl([rsa_signer.sign(BODY)], [], BODY, ed).reason == "malformed signature"
    assert verify_ghl([], [s.sign(BODY)], BODY, ed, rsa_keys, legacy_rsa=True).reason == "malformed signature"
    for n in (63, 65, 0, 128):
        assert verify_ghl([base64.b64encode(b"\x01" * n).decode()], [], BODY, ed).reason == "malformed signature"
    for n in (511, 513, 256):
        v = verify_ghl([], [base64.b64encode(b"\x01" * n).decode()], BODY, ed, rsa_keys, legacy_rsa=True)
        assert v.reason == "malformed signature"


def test_base64_tricks_are_malformed() -> None:
    s = GhlSigner()
    good = s.sign(BODY)
    raw = base64.b64decode(good)
    assert good.endswith("==")
    tricks = [
        good[:40] + " " + good[40:],  # inner whitespace
        good[:40] + "\n" + good[40:],
        good.rstrip("="),  # missing padding
        good + "=",  # extra padding
        good[:-2] + "=A",  # padding in the middle
        base64.urlsafe_b64encode(raw).decode().replace("=", "") + "==",  # url-safe alphabet (if it differs)
        good[:-3] + chr(ord(good[-3]) + 1) + "==",  # non-canonical: unused bits set
        good[:-4] + "é" + good[-3:],  # non-ASCII
        "A" * 5000,  # huge
        good + good,
    ]
    for t in tricks:
        if t == good:
            continue
        assert decode_b64_signature(t, 64) is None, t
        assert not verify_ghl([t], [], BODY, _pub(s)).ok
    assert decode_b64_signature(" " + good + "\t", 64) == raw  # OWS around the value is fine


# ------------------------------------------------------------------------------------ tenant schemes


def _h(d: dict[str, str] | list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    items = list(d.items()) if isinstance(d, dict) else d
    return Headers(raw=[(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items]).getlist


def test_token_scheme() -> None:
    sec = TenantSecrets(token_hashes=[token_hash("old-token"), token_hash("new-token")])
    for t in ("old-token", "new-token", " new-token "):
        assert verify_tenant(_h({"X-Webhook-Token": t}), BODY, sec, now=0).ok
    v = verify_tenant(_h({"X-Webhook-Token": "nope"}), BODY, sec, now=0)
    assert (v.ok, v.reason, v.scheme) == (False, "bad token", "tenant-token")
    assert verify_tenant(_h([("x-webhook-token", "old-token"), ("x-webhook-token", "old-token")]), BODY, sec,
                         now=0).reason == "duplicated signature header"
    assert verify_tenant(_h({"X-Webhook-Token": "x" * 600}), BODY, sec, now=0).reason == "malformed signature"
    assert verify_tenant(_h({}), BODY, sec, now=0).reason == "missing signature"
    assert not verify_tenant(_h({"X-Webhook-Token": "old-token"}), BODY, None, now=0).ok
    assert token_hash("old-token") == hashlib.sha256(b"old-token").digest()


def test_hmac_scheme() -> None:
    k1, k2 = b"first-secret", b"second-secret"
    sec = TenantSecrets(hmac_keys=[k1, k2])
    for k in (k1, k2):
        sig = hmac_signature(k, BODY)
        for value in (sig, sig.upper(), "sha256=" + sig):
            assert verify_tenant(_h({"X-Webhook-Signature": value}), BODY, sec, now=0).ok
    sig = hmac_signature(b"other", BODY)
    assert verify_tenant(_h({"X-Webhook-Signature": sig}), BODY, sec, now=0).reason == "bad signature"
    assert verify_tenant(_h({"X-Webhook-Signature": hmac_signature(k1, BODY)}), BODY + b" ", sec, now=0).reason \
        == "bad signature"
    for bad in ("zz" * 32, "ab" * 31, "ab" * 33, "", "sha256="):
        assert verify_tenant(_h({"X-Webhook-Signature": bad}), BODY, sec, now=0).reason in (
            "malformed signature", "missing signature")
    # a stronger header present but wrong is not rescued by a valid token
    both = TenantSecrets(hmac_keys=[k1], token_hashes=[token_hash("tok")])
    v = verify_tenant(_h({"X-Webhook-Signature": "ab" * 32, "X-Webhook-Token": "tok"}), BODY, both, now=0)
    assert not v.ok and v.scheme == "tenant-hmac"


def test_standard_webhooks_sign_vectors() -> None:
    for vec in VECTORS["sign_vectors"]:
        key = decode_whsec(vec["secret"])
        sig = standard_signature(key, vec["msg_id"], vec["timestamp"], vec["payload"].encode())
        assert sig == vec["expected_signature"], vec["id"]


def test_standard_webhooks_secret_decoding_vectors() -> None:
    cases = VECTORS["secret_decoding_vectors"]
    for case in cases["cases"]:
        assert decode_whsec(case["given"]) == base64.b64decode(case["equivalent_padded"])
        assert decode_whsec("whsec_" + case["given"]) == base64.b64decode(case["equivalent_padded"])
    for empty in cases["empty_secret_must_fail"]:
        with pytest.raises(ValueError):
            decode_whsec(empty)


def _expect_valid(vec: dict) -> bool:  # type: ignore[type-arg]
    return str(vec["expect"]).startswith("valid")


def test_standard_webhooks_every_verify_vector() -> None:
    ran = 0
    for vec in VECTORS["verify_vectors"]:
        if vec["id"] == "sw-verify-missing-headers":
            base = next(v for v in VECTORS["verify_vectors"] if v["id"] == "sw-verify-valid")
            sec = TenantSecrets(standard_keys=[decode_whsec(base["secret"])])
            for drop in ("webhook-id", "webhook-timestamp", "webhook-signature"):
                hdrs = {k: v for k, v in base["headers"].items() if k != drop}
                assert not verify_tenant(_h(hdrs), base["payload"].encode(), sec, now=base["now"]).ok, drop
            ran += 1
            continue
        sec = TenantSecrets(standard_keys=[decode_whsec(vec["secret"])])
        body = vec["payload"].encode()
        if "signature_header_variants" in vec:
            base = next(v for v in VECTORS["verify_vectors"] if v["id"] == "sw-verify-valid")
            for variant in vec["signature_header_variants"]:
                hdrs = {**base["headers"], "webhook-signature": variant}
                assert not verify_tenant(_h(hdrs), body, sec, now=vec["now"]).ok, variant
            ran += 1
            continue
        v = verify_tenant(_h(vec["headers"]), body, sec, now=vec["now"])
        assert v.ok is _expect_valid(vec), (vec["id"], v)
        assert v.scheme == "standard-webhooks"
        expect = str(vec["expect"])
        if "too old" in expect:
            assert v.reason == "webhook-timestamp too old"
        if "too new" in expect:
            assert v.reason == "webhook-timestamp too new"
        if "unparseable" in expect:
            assert v.reason == "malformed webhook-timestamp"
        if "no v1" in expect:
            assert v.reason == "no v1 signature"
        ran += 1
    assert ran == len(VECTORS["verify_vectors"])


def test_standard_webhooks_rotation_and_tenant_isolation() -> None:
    old, new, other = decode_whsec("whsec_" + base64.b64encode(b"o" * 32).decode()), b"n" * 32, b"x" * 32
    body = b'{"a":1}'
    for key in (old, new):
        hdrs = standard_headers(key, body, timestamp=1_700_000_000)
        assert verify_tenant(_h(hdrs), body, TenantSecrets(standard_keys=[old, new]), now=1_700_000_000).ok
    hdrs = standard_headers(other, body, timestamp=1_700_000_000)
    assert not verify_tenant(_h(hdrs), body, TenantSecrets(standard_keys=[old, new]), now=1_700_000_000).ok
    # a valid entry among many bogus ones still verifies; only the first 16 entries are read
    good = standard_headers(new, body, msg_id="m1", timestamp=1_700_000_000)["webhook-signature"]
    many = " ".join(["v1,AAAA"] * 3 + [good])
    hdrs = {"webhook-id": "m1", "webhook-timestamp": "1700000000", "webhook-signature": many}
    assert verify_tenant(_h(hdrs), body, TenantSecrets(standard_keys=[new]), now=1_700_000_000).ok
    flood = " ".join(["v1,AAAA"] * 40 + [good])
    hdrs["webhook-signature"] = flood
    assert not verify_tenant(_h(hdrs), body, TenantSecrets(standard_keys=[new]), now=1_700_000_000).ok
    # duplicated standard headers
    dup = [("webhook-id", "m1"), ("webhook-id", "m2"), ("webhook-timestamp", "1700000000"),
           ("webhook-signature", good)]
    v = verify_tenant(_h(dup), body, TenantSecrets(standard_keys=[new]), now=1_700_000_000)
    assert v.reason == schemes.REASON_DUPLICATED
    # the spec's tolerance can be configured
    hdrs = standard_headers(new, body, timestamp=1_700_000_000)
    assert not verify_tenant(_h(hdrs), body, TenantSecrets(standard_keys=[new]), now=1_700_000_100,
                             tolerance_s=60).ok


def test_ed25519_private_key_signatures_are_deterministic_and_64_bytes() -> None:
    key = Ed25519PrivateKey.generate()
    s = GhlSigner(key)
    assert len(base64.b64decode(s.sign(BODY))) == 64
    assert s.sign(BODY) == s.sign(BODY)
