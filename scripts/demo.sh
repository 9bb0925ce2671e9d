#!/usr/bin/env bash
# The main job: install into .venv (first run only) and run the embedded demo.
source "$(dirname "$0")/_venv.sh"
exec .venv/bin/ghl-intake demo "$@"
