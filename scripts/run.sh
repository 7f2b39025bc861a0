#!/usr/bin/env bash
# Run the whole broker on this machine: web + worker, with an embedded Redis under ./.broker unless
# BROKER_REDIS_URL is set. Extra arguments go to `broker run` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --disable-pip-version-check -e .
exec broker run "$@"
