"""Generate labeled PII test messages in real-estate lead style (deterministic, seeded).

Writes ``tests/fixtures/pii/generated.jsonl`` in the format of ``cases.jsonl``:
``{"id", "kind", "text", "must_redact", "must_keep"}``. The ``kind`` prefix before the first "-"
is the family (email, phone, card, ssn, bank, credential, name, address, dob, keep).

All people are fake: names from Faker, phones only 555-01xx, emails only example.org/.com/.net,
card numbers only standard test numbers, SSN-like values only in the 900 series.

    .venv/bin/python benchmarks/gen_pii_cases.py [--out PATH] [--seed N] [--per-family N]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faker import Faker

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "pii" / "generated.jsonl"

TEST_CARDS = [
    "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "5555 5555 5555 4444",
    "5555-5555-5555-4444", "5105 1051 0510 5100", "2221 0000 0000 0009", "2223 0031 2200 3222",
    "3782 822463 10005", "3714 496353 98431", "378282246310005", "6011 1111 1111 1117",
    "6011 0009 9013 9424", "3056 9309 0259 04", "4012 8888 8888 1881", "4222 2222 2222 2",
    "3530 1113 3330 0000", "6200 0000 0000 0005",
]
DOMAINS = ["example.org", "example.com", "example.net", "mail.example.com", "EXAMPLE.ORG"]
KEEP_SNIPPETS = [
    "listed at $425,000", "budget is 450k-500k", "MLS# 2045513", "MLS 7731902", "2,350 sq ft", "built in 1998",
    "in 78704", "ZIP 78745-1234", "Saturday at 2:30pm", "on 11/14 at 10am", "3 bed 2 bath", "0.25 acre lot",
    "HOA is $120/mo", "Order #8166808862", "form 4506-C", "unit D3", "section H1", "$1,250,000",
    "under 600k", "2 car garage", "closing 12/15/2026", "5% down", "30 days", "rate of 6.25%",
]


def routing_number(rng: random.Random) -> str:
    while True:
        d = [rng.choice([0, 1, 2, 3]) if i == 0 else rng.randrange(10) for i in range(8)]
        if d[0] == 0 and d[1] == 0:
            continue
        w = (3, 7, 1, 3, 7, 1, 3, 7)
        check = (10 - sum(x * k for x, k in zip(d, w, strict=True)) % 10) % 10
        s = "".join(map(str, d)) + str(check)
        if s[:2] in {f"{i:02d}" for i in list(range(1, 13)) + list(range(21, 33))}:
            return s


class Gen:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)

    # ---- values
    def name(self) -> tuple[str, str]:
        return self.fake.first_name(), self.fake.last_name()

    def phone(self) -> tuple[str, str]:
        """(text form, value that must disappear)."""
        area = self.rng.choice(["512", "737", "214", "469", "713", "210", "602", "303", "615", "404"])
        last = f"01{self.rng.randrange(100):02d}"
        forms = [
            f"({area}) 555-{last}", f"{area}-555-{last}", f"{area}.555.{last}", f"{area} 555 {last}",
            f"+1 {area} 555 {last}", f"+1{area}555{last}", f"1-{area}-555-{last}", f"{area}555{last}",
            f"+1 ({area}) 555-{last}", f"{area}-555-{last} ext 12",
        ]
        f = self.rng.choice(forms)
        must = f.replace(" ext 12", "")
        if must.startswith("+1 ") or must.startswith("1-"):
            must = must[3:] if must.startswith("+1 ") else must[2:]
        return f, must

    def email(self, first: str, last: str) -> str:
        user = self.rng.choice([
            f"{first}.{last}", f"{first[0]}{last}", f"{first}{self.rng.randrange(10, 99)}",
            f"{first}.{last}+homes", f"{last}.{first}", f"{first}_{last}",
        ]).lower()
        if self.rng.random() < 0.15:
            user = user.upper()
        return f"{user}@{self.rng.choice(DOMAINS)}"

    def ssn(self) -> str:
        a, b, c = f"9{self.rng.randrange(10, 99)}", f"{self.rng.randrange(10, 99)}", f"{self.rng.randrange(1000, 9999)}"
        return self.rng.choice([f"{a}-{b}-{c}", f"{a} {b} {c}", f"{a}{b}{c}", f"{a}\u2013{b}\u2013{c}"])

    def street(self) -> str:
        f = self.fake
        base = f"{f.building_number()} {f.street_name()}"
        r = self.rng.random()
        if r < 0.2:
            base += f" {f.secondary_address()}"
        elif r < 0.3:
            base = base.replace(" ", " N ", 1) if self.rng.random() < 0.5 else base
        return base

    def token(self, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def jwt(self) -> str:
        def b64(obj: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

        return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'sub': self.token(10), 'iat': 1700000000})}.{self.token(43, string.ascii_letters + string.digits + '-_')}"

    def keep(self, k: int = 1) -> list[str]:
        return self.rng.sample(KEEP_SNIPPETS, k)

    # ---- families
    def email_case(self) -> tuple[str, str, list[str], list[str]]:
        first, last = self.name()
        e = self.email(first, last)
        kp = self.keep()
        t = self.rng.choice([
            (f"Hi! Interested in the home {kp[0]}. My email is {e} if you can send details.", "email-plain"),
            (f"please send the disclosures to {e} thanks ({kp[0]})", "email-lower"),
            (f"<p>You can reach me at <a href=\"mailto:{e}\">{e}</a> re: the listing {kp[0]}</p>", "email-html"),
            (f"Email: {e}\nLooking at homes {kp[0]}", "email-label"),
            (f"my wife's email is {e} too, cc her on everything {kp[0]}", "email-cc"),
            (f"Sent from {e} - can we tour the one {kp[0]}?", "email-inline"),
        ])
        return t[1], t[0], [e], kp

    def phone_case(self) -> tuple[str, str, list[str], list[str]]:
        f, must = self.phone()
        kp = self.keep()
        t = self.rng.choice([
            (f"Can you call me at {f}? Interested in the house {kp[0]}", "phone-call"),
            (f"{f} is my cell, text anytime about the place {kp[0]}", "phone-suffix"),
            (f"my number {f}. want to see it {kp[0]}", "phone-number"),
            (f"Text me on {f} after 5 re the listing {kp[0]}", "phone-text"),
            (f"Best number to reach me: {f}\nWe liked the one {kp[0]}", "phone-label"),
            (f"Hi, I'm interested {kp[0]}. Cell {f}", "phone-cell"),
            (f"call or text {f} thanks! {kp[0]}", "phone-callortext"),
        ])
        return t[1], t[0], [must], kp

    def card_case(self) -> tuple[str, str, list[str], list[str]]:
        c = self.rng.choice(TEST_CARDS)
        kp = self.keep()
        t = self.rng.choice([
            (f"put the application fee on my card {c} exp 04/29 ({kp[0]})", "card-fee"),
            (f"Earnest money: use {c} please. {kp[0]}", "card-earnest"),
            (f"card number is {c}, cvv on file. {kp[0]}", "card-number"),
            (f"can you charge {c} for the inspection {kp[0]}", "card-charge"),
        ])
        return t[1], t[0], [c], kp

    def ssn_case(self) -> tuple[str, str, list[str], list[str]]:
        s = self.ssn()
        kp = self.keep()
        t = self.rng.choice([
            (f"my ssn is {s} for the credit pull {kp[0]}", "ssn-is"),
            (f"SSN: {s}\nLender needs it for pre-approval {kp[0]}", "ssn-label"),
            (f"Social security # {s}. {kp[0]}", "ssn-social"),
            (f"for the application my social is {s} thanks {kp[0]}", "ssn-social2"),
        ])
        return t[1], t[0], [s], kp

    def bank_case(self) -> tuple[str, str, list[str], list[str]]:
        r = routing_number(self.rng)
        a = str(self.rng.randrange(10**7, 10**12)).zfill(self.rng.choice([8, 10, 12]))
        kp = self.keep()
        t = self.rng.choice([
            (f"wire the earnest money to routing {r} account {a} {kp[0]}", "bank-wire", [r, a]),
            (f"Routing #: {r}\nAccount #: {a}\n{kp[0]}", "bank-labels", [r, a]),
            (f"my checking account number is {a} for the deposit refund {kp[0]}", "bank-account", [a]),
            (f"ABA {r}, acct {a}. {kp[0]}", "bank-aba", [r, a]),
        ])
        return t[1], t[0], t[2], kp

    def credential_case(self) -> tuple[str, str, list[str], list[str]]:
        kp = self.keep()
        sk = "sk_live_" + self.token(28)
        pk = "pk_test_" + self.token(24)
        jwt = self.jwt()
        bearer = self.token(40, string.ascii_letters + string.digits + "._-")
        pw = self.rng.choice(["Sunset#2024", "tulip-Garden-88", "Maple!Street7", "hunter2hunter", "Br0ker$afe"])
        t = self.rng.choice([
            (f"the webhook header is Authorization: Bearer {bearer} {kp[0]}", "credential-bearer", [bearer]),
            (f"our stripe key is {sk} for the deposit page {kp[0]}", "credential-sk", [sk]),
            (f"publishable key {pk} ({kp[0]})", "credential-pk", [pk]),
            (f"token: {jwt}\n{kp[0]}", "credential-jwt", [jwt]),
            (f"the portal password is {pw} {kp[0]}", "credential-password", [pw]),
            (f"lockbox code is 4821 and wifi password: {pw} {kp[0]}", "credential-wifi", [pw]),
            (f"api_key={self.token(36)}&listing=1 {kp[0]}", "credential-kv", []),
        ])
        must = t[2] if t[2] else [t[0].split("=")[1].split("&")[0]]
        return t[1], t[0], must, kp

    def name_case(self) -> tuple[str, str, list[str], list[str]]:
        first, last = self.name()
        full = f"{first} {last}"
        kp = self.keep()
        t = self.rng.choice([
            (f"Hi, this is {full}, I saw your listing {kp[0]}", "name-thisis", [full]),
            (f"hey its {full.lower()}, call me back about the one {kp[0]}", "name-lower", [full.lower()]),
            (f"My name is {full} and I'm interested in the home {kp[0]}", "name-myname", [full]),
            (f"HI THIS IS {full.upper()} CALL ME ABOUT THE HOUSE {kp[0]}", "name-caps", [full.upper()]),
            (f"Can we see it {kp[0]}?\n\nThanks,\n{full}", "name-signoff", [full]),
            (f"Looking for a 3 bed {kp[0]}.\nBest regards,\n{full}\nSent from my iPhone", "name-signoff2", [full]),
            (f"I'm {full}, we spoke at the open house {kp[0]}", "name-im", [full]),
            (f"{full} referred me to you. We want to see homes {kp[0]}", "name-ner", [full]),
            (f"Please loop in my partner {full} on the offer {kp[0]}", "name-ner2", [full]),
            (f"interested {kp[0]} - {first.lower()} {last.lower()}", "name-dash", [f"{first.lower()} {last.lower()}"]),
        ])
        return t[1], t[0], t[2], kp

    def address_case(self) -> tuple[str, str, list[str], list[str]]:
        st = self.street()
        city, state, z = self.fake.city(), self.fake.state_abbr(), self.fake.zipcode()
        kp = self.keep()
        t = self.rng.choice([
            (f"I live at {st}, {city}, {state} {z} and want to sell {kp[0]}", "address-full"),
            (f"We're at {st} now, looking to upgrade {kp[0]}", "address-short"),
            (f"mail the docs to {st}, {city} {state} {z} please {kp[0]}", "address-mail"),
            (f"Current address: {st}\n{city}, {state} {z}\n{kp[0]}", "address-label"),
            (f"can you do a CMA on {st.lower()}? {kp[0]}", "address-lower"),
        ])
        return t[1], t[0], [st.lower() if t[1] == "address-lower" else st], kp

    def dob_case(self) -> tuple[str, str, list[str], list[str]]:
        d = self.fake.date_of_birth(minimum_age=22, maximum_age=80)
        form = self.rng.choice([d.strftime("%m/%d/%Y"), d.strftime("%Y-%m-%d"), d.strftime("%B %d, %Y"), d.strftime("%m-%d-%Y")])
        kp = self.keep()
        t = self.rng.choice([
            (f"DOB {form} for the pre-approval {kp[0]}", "dob-label"),
            (f"my date of birth is {form} {kp[0]}", "dob-phrase"),
            (f"born {form}, first time buyer {kp[0]}", "dob-born"),
            (f"Birthday: {form}\n{kp[0]}", "dob-birthday"),
        ])
        return t[1], t[0], [form], kp

    def keep_case(self) -> tuple[str, str, list[str], list[str]]:
        kp = self.keep(3)
        t = self.rng.choice([
            (f"Is the home {kp[0]} still available? Also {kp[1]} and {kp[2]}.", "keep-mix"),
            (f"we'd offer {kp[0]}, need {kp[1]}, {kp[2]}", "keep-offer"),
            (f"Showing request: {kp[0]}; {kp[1]}; {kp[2]}", "keep-showing"),
            (f"Pre-approved! {kp[0]} / {kp[1]} / {kp[2]}", "keep-preapproval"),
            (f"looking {kp[0]} {kp[1]} {kp[2]} thx", "keep-terse"),
        ])
        return t[1], t[0], [], kp


FAMILIES: list[tuple[str, Callable[[Gen], tuple[str, str, list[str], list[str]]]]] = [
    ("email", Gen.email_case), ("phone", Gen.phone_case), ("card", Gen.card_case), ("ssn", Gen.ssn_case),
    ("bank", Gen.bank_case), ("credential", Gen.credential_case), ("name", Gen.name_case),
    ("address", Gen.address_case), ("dob", Gen.dob_case), ("keep", Gen.keep_case),
]


def generate(seed: int = 20261203, per_family: int = 36) -> list[dict[str, Any]]:
    g = Gen(seed)
    out = []
    for fam, fn in FAMILIES:
        for i in range(per_family):
            kind, text, must_redact, must_keep = fn(g)
            out.append({"id": f"G-{fam}-{i:03d}", "kind": kind, "text": text, "must_redact": must_redact,
                        "must_keep": must_keep})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=20261203)
    ap.add_argument("--per-family", type=int, default=36)
    args = ap.parse_args(argv)
    cases = generate(args.seed, args.per_family)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as fh:
        for c in cases:
            fh.write(json.dumps(c, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
