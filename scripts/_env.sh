# Shared by scripts/*: a project venv in .venv with the package and its dev
# tools, reinstalled only when pyproject.toml or setup.py changed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
stamp="$(cat pyproject.toml setup.py | sha256sum | cut -c1-16)"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.motia-stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "setting up $VENV (one time)..." >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -e ".[dev]" >&2
  echo "$stamp" > "$VENV/.motia-stamp"
fi
export PATH="$VENV/bin:$PATH"
