#!/usr/bin/env bash
# Puts modelci, from this action's own checkout (the ref the workflow pinned), into the runner's
# Python, and that Python's scripts on the PATH of later steps. Every modelci action runs it first.
#
# MODELCI_PYTHON names the interpreter (default: python3, e.g. from actions/setup-python). The
# install is skipped when that exact modelci version is already there: a self-hosted runner's
# persistent environment pays for it once. An installed torch is kept as it is, so a GPU runner's
# CUDA build is never replaced.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${MODELCI_PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "::error::modelci: no '$python' on this runner; install Python 3.10 or later first (actions/setup-python), or set the python input"
  exit 2
fi
# NOTE: a system Python that is externally managed (PEP 668, e.g. ubuntu-latest's) refuses pip:
# modelci then gets a virtual environment of its own, which still sees the system's packages (an
# installed CUDA torch among them).
managed="$("$python" -c 'import os, sys, sysconfig
print(int(sys.prefix == sys.base_prefix and os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))))')"
if [ "$managed" = 1 ]; then
  venv="${RUNNER_TEMP:-/tmp}/modelci-venv"
  [ -x "$venv/bin/python" ] || "$python" -m venv --system-site-packages "$venv"
  python="$venv/bin/python"
fi
want="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$root/src/modelci/__init__.py")"
have="$("$python" -c 'import modelci; print(modelci.__version__)' 2>/dev/null || true)"
if [ "$have" != "$want" ]; then
  echo "modelci $want: installing from $root into $("$python" -c 'import sys; print(sys.prefix)')"
  "$python" -m pip install --disable-pip-version-check --quiet "$root"
fi
scripts="$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
echo "$scripts" >> "$GITHUB_PATH"
echo "version=$want" >> "$GITHUB_OUTPUT"
echo "python=$("$python" -c 'import sys; print(sys.executable)')" >> "$GITHUB_OUTPUT"
