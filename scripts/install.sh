#!/usr/bin/env bash
# One-step set-up of duopath in ./.venv (idempotent: a second run only checks).
#
#   bash scripts/install.sh            # runtime: pipeline + tiatoolbox
#   bash scripts/install.sh --test     # + pytest, hypothesis, lifelines, ruff
#
# torch: if the venv has no torch, installs torch 2.14.1 + torchvision 0.29.1 (the pair whose
# torchvision works; torch 2.13.0 CPU has no matching torchvision on PyPI). A GPU user who wants
# another CUDA build installs torch/torchvision first (e.g. `.venv/bin/pip install torch
# torchvision --index-url https://download.pytorch.org/whl/cu124`) and this script keeps it.
# tiatoolbox 2.1.3 is installed with --no-deps: its metadata pins torch<2.13 and pulls
# jupyterlab/sphinx; the packages it really needs are the `tia` extra of pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${DUOPATH_VENV:-.venv}
extras="tia"
[[ "${1:-}" == "--test" ]] && extras="tia,test"

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
    echo "[install] torch 2.14.1 + torchvision 0.29.1"
    "${PIP[@]}" install -c constraints.txt torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "is ignored" || true
fi
echo "[install] duopath[$extras]"
"${PIP[@]}" install -c constraints.txt -e ".[$extras]" 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "import duopath, torch, torchvision, openslide, zarr, snakemake" \
    || { echo "[install] FAILED: core imports do not work in $VENV" >&2; exit 1; }
if ! "$VENV/bin/python" -c "import importlib.metadata as m; m.version('tiatoolbox')" 2>/dev/null; then
    echo "[install] tiatoolbox 2.1.3 (--no-deps)"
    "${PIP[@]}" install --no-deps tiatoolbox==2.1.3 2>&1 | grep -v "is ignored" || true
fi
echo "[install] ok: $("$VENV/bin/python" -c 'import duopath, torch; print("duopath", duopath.__version__, "torch", torch.__version__)')"
