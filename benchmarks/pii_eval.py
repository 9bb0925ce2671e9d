"""PII quality harness: share of ``must_redact`` values removed and ``must_keep`` values kept.

Runs ``tests/fixtures/pii/cases.jsonl`` plus ``generated.jsonl`` (see gen_pii_cases.py) and the
hand-written ``holdout.jsonl`` through ``Redactor`` and prints a table per kind family: once for the
held-out set alone (the honest figure: not written from the recognizers' templates) and once for all
cases together. Exit code 1 when a target is missed in either table.

A ``must_redact`` value counts as leaked when it still occurs in the output as a whole word
(case-insensitive), so "tom" is not "leaked" by "tomorrow". A ``must_keep`` value must survive exactly.

    .venv/bin/python benchmarks/pii_eval.py [--json] [--pattern-only] [--model NAME] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pipeline.redact import DEFAULT_SPACY_MODEL, Redactor  # noqa: E402

PII_DIR = ROOT / "tests" / "fixtures" / "pii"
HOLDOUT = PII_DIR / "holdout.jsonl"
FIXTURES = [PII_DIR / "cases.jsonl", PII_DIR / "generated.jsonl", HOLDOUT]
FAMILIES = ["email", "phone", "card", "ssn", "bank", "credential", "name", "address", "dob", "keep"]
REDACT_TARGETS = {"email": 0.99, "phone": 0.99, "card": 0.99, "ssn": 0.99, "bank": 0.99, "credential": 0.99,
                  "name": 0.95, "address": 0.95}
KEEP_TARGET = 0.98


def family(kind: str) -> str:
    return kind.split("-", 1)[0]


def load_cases(paths: Iterable[Path] = FIXTURES) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = []
    for p in paths:
        if p.exists():
            cases.extend(json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
    return cases


def leaked(value: str, output: str) -> bool:
    """``value`` still present in ``output`` as a whole word (case-insensitive)."""
    return re.search(r"(?<!\w)" + re.escape(value) + r"(?!\w)", output, re.IGNORECASE) is not None


@dataclass
class Tally:
    redact_total: int = 0
    redact_hit: int = 0
    keep_total: int = 0
    keep_hit: int = 0
    misses: list[str] = field(default_factory=list)

    def removed(self) -> float | None:
        return self.redact_hit / self.redact_total if self.redact_total else None

    def kept(self) -> float | None:
        return self.keep_hit / self.keep_total if self.keep_total else None


def evaluate(redactor: Redactor, cases: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-family tallies, overall keep share and the list of missed targets."""
    tallies: dict[str, Tally] = {f: Tally() for f in FAMILIES}
    results = redactor.redact_texts("eval-tenant", [c["text"] for c in cases])
    for c, r in zip(cases, results, strict=True):
        t = tallies.setdefault(family(c["kind"]), Tally())
        for v in c["must_redact"]:
            t.redact_total += 1
            if not leaked(v, r.redacted):
                t.redact_hit += 1
            else:
                t.misses.append(f"{c['id']} leaked {v!r}: {r.redacted!r}")
        for v in c["must_keep"]:
            t.keep_total += 1
            if v in r.redacted:
                t.keep_hit += 1
            else:
                t.misses.append(f"{c['id']} lost {v!r}: {r.redacted!r}")
    keep_total = sum(t.keep_total for t in tallies.values())
    keep_hit = sum(t.keep_hit for t in tallies.values())
    kept_overall = keep_hit / keep_total if keep_total else 1.0
    failed = [f"{fam} removed {tallies[fam].removed():.3f} < {tgt}" for fam, tgt in REDACT_TARGETS.items()
              if tallies[fam].redact_total and (tallies[fam].removed() or 0.0) < tgt]
    if kept_overall < KEEP_TARGET:
        failed.append(f"kept overall {kept_overall:.3f} < {KEEP_TARGET}")
    return {
        "cases": len(cases),
        "ner_enabled": redactor.ner_enabled,
        "families": {
            f: {"redact_total": t.redact_total, "removed": t.removed(), "keep_total": t.keep_total, "kept": t.kept(),
                "target_removed": REDACT_TARGETS.get(f), "misses": t.misses}
            for f, t in tallies.items()
        },
        "kept_overall": kept_overall,
        "failed": failed,
    }


def _fmt(x: float | None) -> str:
    return "   -  " if x is None else f"{x:6.3f}"


def print_table(report: dict[str, Any], verbose: bool = False, title: str = "all cases") -> None:
    print(f"== {title}: {report['cases']} cases   spaCy NER: {'on' if report['ner_enabled'] else 'off (pattern-only)'}")
    print(f"{'family':<11} {'n_redact':>8} {'removed':>8} {'target':>7} {'n_keep':>7} {'kept':>7}")
    for f, d in report["families"].items():
        tgt = "" if d["target_removed"] is None else f"{d['target_removed']:.2f}"
        print(f"{f:<11} {d['redact_total']:>8} {_fmt(d['removed']):>8} {tgt:>7} {d['keep_total']:>7} {_fmt(d['kept']):>7}")
    print(f"kept overall: {report['kept_overall']:.3f} (target {KEEP_TARGET})")
    if verbose:
        for f, d in report["families"].items():
            for m in d["misses"]:
                print(f"  [{f}] {m}")
    print("RESULT:", "all targets met" if not report["failed"] else "MISSED: " + "; ".join(report["failed"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="PII redaction quality harness")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--pattern-only", action="store_true", help="run without the spaCy model")
    ap.add_argument("--model", default=DEFAULT_SPACY_MODEL)
    ap.add_argument("--verbose", "-v", action="store_true", help="list every miss")
    args = ap.parse_args(argv)
    redactor = Redactor(pseudonym_key=b"pii-eval-key-not-secret-0123456789",
                        spacy_model=None if args.pattern_only else args.model)
    held_out = evaluate(redactor, load_cases([HOLDOUT]))
    report = evaluate(redactor, load_cases())
    report["held_out"] = held_out
    report["command"] = shlex.join([".venv/bin/python", "benchmarks/pii_eval.py", *(argv if argv is not None else sys.argv[1:])])
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(held_out, args.verbose, title="held-out (holdout.jsonl, hand-written)")
        print()
        print_table(report, False, title="all cases (cases + generated + held-out)")
        print("reproduce:", report["command"])
    return 1 if report["failed"] or held_out["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
