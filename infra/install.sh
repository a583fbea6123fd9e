#!/usr/bin/env bash
# Install pgenrm into ./.venv with pinned versions, then build the local model folders.
#
#   bash infra/install.sh            # runtime: packages + models (smollm2, minilm)
#   bash infra/install.sh --dev      # also test tools, TRL (the `train` extra) and Debian's chromium
#
# Idempotent: a second run only checks. torch is pinned to 2.13.0 (a CPU wheel);
# an unpinned torch would pull a multi-GB CUDA build. vLLM is the optional `gpu`
# extra and is never installed here.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
models="smollm2 minilm"
for arg in "$@"; do
  case "$arg" in
    --dev) dev=1 ;;
    --models=*) models="${arg#--models=}" ;;
    *) echo "unknown option: $arg" >&2; exit 2 ;;
  esac
done

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "pgenrm needs Python >= 3.11 (found $("$PY" --version))" >&2; exit 1
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv

extras="."
[ "$dev" = 1 ] && extras=".[dev]"
stamp=".venv/.pgenrm-install-$(cat pyproject.toml infra/requirements.lock | sha256sum | cut -c1-16)-$dev"
if [ ! -f "$stamp" ]; then
  echo "==> installing Python packages (pinned by infra/requirements.lock)"
  .venv/bin/python -m pip install -q --disable-pip-version-check \
      -c infra/requirements.lock -e "$extras" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip check
  .venv/bin/python -c 'import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith("2.13.0") else f"torch {v} installed, expected 2.13.0")'
  touch "$stamp"
fi

echo "==> model folders: $models"
for name in $models; do
  .venv/bin/pgenrm models install "$name"
done

if [ "$dev" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  echo "==> installing Debian's chromium for the dashboard browser test"
  sudo_cmd=""; [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q chromium >/dev/null \
    || { DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get update -q >/dev/null \
         && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q chromium >/dev/null; } \
    || echo "warning: chromium could not be installed; the browser test will be skipped" >&2
fi
echo "==> pgenrm installed: $(.venv/bin/pgenrm --help >/dev/null && echo ok)"
