# Sourced by bin/pgjobs and bin/test: create .venv and install the project on first use, and
# again whenever pyproject.toml changes, with every extra (test, enrichment, embedded, dashboard, metrics). Needs only
# python3 (>= 3.11) on PATH.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PGJOBS_PYTHON:-python3}"
stamp="$VENV/.pgjobs-installed"
want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "pgjobs: creating $VENV (first run)" >&2
  "$PY" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "pgjobs: installing dependencies into .venv" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[test,enrichment,embedded,dashboard,metrics]" >&2
  echo "$want" > "$stamp"
fi
