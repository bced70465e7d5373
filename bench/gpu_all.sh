#!/usr/bin/env bash
# Every GPU measurement of issue 18 in one run: < 7 minutes on one H200 with 16 CPU cores.
#
#   bash bench/gpu_all.sh            # on the GPU machine (results in $OUT, else bench/results)
#   bash bench/gpu_all.sh --tiny     # smoke test of the same steps on CPU, tiny sizes (~15 min on 2 busy cores)
#
# Steps: (1) bench/embed.py: a 10,000-tile (20x) synthetic slide through segment -> tile -> embed
# with ResNet50 and ViT-L/16 (random weights through the registry's local-weights path), beside
# each encoder's pure forward and a CLAM-pattern peer loop, then the fixed cost of embed jobs
# (4 small slides: 4 processes vs 1); (2) bench/train.py: teacher/student step time and peak
# memory, 1k -> 50k tiles per patient; (3) if time is left, torch.compile'd ViT-L forward.
# Missing Python packages (openslide, zarr, pydantic...) are installed from bench/wheels/ when
# present (bench/README.md says how to fetch them; the GPU machine has no network).
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS="${OUT:-bench/results}"
mkdir -p "$RESULTS"
PY="${PYTHON:-python3}"
TINY=0
[[ "${1:-}" == "--tiny" ]] && TINY=1

if ! "$PY" -c "import openslide, zarr, pydantic" 2>/dev/null; then
  if compgen -G "bench/wheels/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/duopath-site bench/wheels/*.whl
    export PYTHONPATH="/tmp/duopath-site${PYTHONPATH:+:$PYTHONPATH}"
  else
    echo "openslide/zarr/pydantic missing and no bench/wheels/: see bench/README.md" >&2
    exit 2
  fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi -L > "$RESULTS/nvidia-smi.txt" 2>&1 || true

if [[ $TINY == 1 ]]; then
  EMBED=(--device cpu --tiles-20x 16 --encoders resnet50_trunc,uni --cap uni=1 --batch 2
         --workers 2 --pure-seconds 1 --small-slides 2 --small-tiles 16
         --fixed-encoders resnet50_trunc --work /tmp/duopath-bench-tiny)
  TRAIN=(--device cpu --sizes 100,200 --repeats 1 --dim 64)
  SUFFIX=tiny
else
  EMBED=(--tiles-20x 10000 --encoders resnet50_trunc,uni --batch 256 --workers 15
         --pure-seconds 5 --small-slides 4 --small-tiles 80
         --fixed-encoders resnet50_trunc,uni --work /tmp/duopath-bench)
  TRAIN=(--sizes 1000,2000,5000,10000,20000,50000 --repeats 3)
  SUFFIX=gpu
fi

"$PY" bench/embed.py "${EMBED[@]}" --out "$RESULTS/embed_$SUFFIX.json" 2>&1 | tee "$RESULTS/embed_$SUFFIX.log"
"$PY" bench/train.py "${TRAIN[@]}" --out "$RESULTS/train_$SUFFIX.json" 2>&1 | tee "$RESULTS/train_$SUFFIX.log"
if [[ $TINY == 0 && $SECONDS -lt 300 ]]; then
  "$PY" bench/embed.py "${EMBED[@]}" --compile-only uni --out "$RESULTS/embed_$SUFFIX.json" 2>&1 \
    | tee -a "$RESULTS/embed_$SUFFIX.log"
fi
echo "gpu_all: done in ${SECONDS}s; results in $RESULTS"
