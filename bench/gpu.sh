#!/usr/bin/env bash
# The whole GPU benchmark table in one go (issue: fast on a GPU), on a machine with PyTorch 2.11
# preinstalled and the built binary carried in target/release/selfsup. Prints one Markdown table:
# our number, the reference's from the same run, and the ratio. Budget: under 5 minutes.
#   bash bench/gpu.sh            # from the repository root, ../shared beside it
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/selfsup}
REF=${REF:-../shared/bench}
DATA=${DATA:-/tmp/cifar}
STEPS=${STEPS:-20}
# the binary's rpath points into the project venv; on the GPU machine use the installed torch
TORCH_LIB=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}"
if [ ! -d "$DATA/train" ]; then
  mkdir -p "$DATA" && tar -xzf ../shared/data/cifar10-jpeg.tar.gz -C "$DATA"
fi
if [ -d "$REF/wheels" ] && ! python3 -c 'import lightly' 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site "$REF"/wheels/*.whl && export PYTHONPATH=/tmp/site
fi
ips() { grep -o 'images_per_s=[0-9.]*' | head -1 | cut -d= -f2; }
ratio() { python3 -c "import sys; a,b=sys.argv[1:]; print(f'{float(a)/float(b):.2f}x' if a and b else 'n/a')" "$1" "$2" 2>/dev/null || echo n/a; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
echo
echo "| measurement | flags | selfsup images/s | reference images/s | ratio |"
echo "|---|---|---|---|---|"
STEP_OURS=""
for batch in 256 512; do
  for flags in "" "--amp --channels-last"; do
    ref=$(timeout 120 python3 "$REF/byol_step.py" --device cuda --batch $batch --steps $STEPS $flags 2>&1 | ips)
    ours=$(timeout 120 "$BIN" bench step --device cuda --batch $batch --steps $STEPS $flags 2>&1 | ips)
    [ "$batch" = 512 ] && [ -n "$flags" ] && STEP_OURS=$ours
    echo "| step (byol_step.py) | batch $batch ${flags:-f32} | ${ours:-fail} | ${ref:-fail} | $(ratio "$ours" "$ref") |"
  done
done
lref=$(timeout 180 python3 "$REF/lightly_byol.py" --data "$DATA/train" --batch 512 --workers 14 --amp 2>&1 | ips)
e2e=$(timeout 180 "$BIN" bench train --data "folder:$DATA@train" --device cuda --batch 512 --steps 40 --warmup 10 --amp --channels-last 2>&1 | ips)
echo "| end to end vs lightly (14 workers) | batch 512 --amp | ${e2e:-fail} | ${lref:-fail} | $(ratio "$e2e" "$lref") |"
echo "| end to end vs our step | batch 512 --amp --channels-last | ${e2e:-fail} | ${STEP_OURS:-fail} | $(ratio "$e2e" "$STEP_OURS") |"
