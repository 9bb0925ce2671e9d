"""Only the redact worker loads Presidio and spaCy; every other stage process stays small."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("spacy", "presidio_analyzer", "thinc", "torch")


@pytest.mark.parametrize("stage", ["dedup", "rate", "persist", "audit"])
def test_stage_worker_does_not_import_nlp(stage: str) -> None:
    code = (
        "import sys, importlib\n"
        f"m = importlib.import_module('workers.{stage}')\n"
        "from ghl_intake import embedded, cli  # the process entry points too\n"
        "import ingress.app\n"
        f"print(','.join(sorted(x for x in {HEAVY!r} if x in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"workers.{stage} imported {out.stdout.strip()}"


def test_redact_worker_builds_presidio_only_at_startup() -> None:
    code = (
        "import sys, importlib\n"
        "importlib.import_module('workers.redact')\n"
        "before = 'presidio_analyzer' in sys.modules\n"
        "from workers.stages import build_ctx\n"
        "print(before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
