#!/usr/bin/env bash
# Create .venv with the package (editable) and its dev tools, installing Debian's python3-venv
# first when this machine lacks it. Re-running is cheap: pip is skipped when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: need root to install Debian packages: $*" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null; then apt_install python3 python3-venv python3-pip; fi
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "bootstrap: Python >= 3.11 is required ($("$PY" --version))" >&2
    exit 1
fi
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then apt_install python3-venv; fi

stamp=.venv/.installed
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING' || true
    .venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v '^WARNING' || true
    .venv/bin/python -c 'import entrypoint, hvac, tenacity, cryptography, click, docker, pytest'
    test -x .venv/bin/bao
    touch "$stamp"
fi
