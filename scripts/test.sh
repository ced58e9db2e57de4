#!/usr/bin/env bash
# Set up .venv (first run only installs; later runs just check) and run every check:
# ruff (lint + format), mypy, pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
# Pinned so pip takes these exact releases rather than resolving a newer multi-GB build.
python -m pip install -q torch==2.14.1 torchvision==0.29.1
python -m pip install -q -e '.[dev]'

ruff check .
ruff format --check .
mypy
pytest "$@"
