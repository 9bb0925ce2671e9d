#!/usr/bin/env bash
# The tests: install into .venv (first run only), lint, type-check, run pytest.
# Without a Redis at 127.0.0.1:6379 (or REDIS_TEST_URL) the real-Redis tests are skipped and listed;
# with INTAKE_REQUIRE_REDIS=1 (as in CI) a missing Redis fails them instead.
source "$(dirname "$0")/_venv.sh"
echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"
set +e
.venv/bin/pytest -q -rs "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests" >&2; fi
exit "$rc"
