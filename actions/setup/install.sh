#!/usr/bin/env bash
# Installs modelci, from this action's own checkout (the ref the workflow pinned), for the steps
# after it: every modelci action runs it first. MODELCI_PYTHON names the runner's interpreter
# (default: python3, e.g. from actions/setup-python); MODELCI_EXTRAS the extras (auto, none or a comma
# list) and MODELCI_CONFIG the config auto reads. install.py does the rest, and says why it installs
# into an environment of the job's own rather than into that Python.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${MODELCI_PYTHON:-python3}"
if ! command -v "$python" >/dev/null 2>&1; then
  echo "::error::modelci: no '$python' on this runner; install Python 3.10 or later first (actions/setup-python), or set the python input"
  exit 2
fi
if ! "$python" -I -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "::error::modelci: '$python' is Python $("$python" -I -c 'import platform; print(platform.python_version())'); modelci needs 3.10 or later (actions/setup-python, or set the python input)"
  exit 2
fi
# NOTE: isolated (-I): neither PYTHONPATH nor the user's site-packages, which any earlier job could
# have written, has a say in what is installed
exec "$python" -I "$here/install.py"
