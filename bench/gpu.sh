#!/usr/bin/env bash
# The whole GPU benchmark table in one go (issue: fast on a GPU), on a machine with PyTorch 2.11
# preinstalled and the built binary carried in target/release/selfsup. Prints one Markdown table:
# our number, the reference's from the same run, and the ratio. Budget: the acceptance rows (step,
# end to end), the CUDA-graph rows and the GPU tests in about 5-6 minutes (one device call,
# timeout_s 600); EXTRA=1 adds the loader and data-parallel diagnostics that runs 1 and 2
# (docs/benchmarks.md) already answered, about 4 more.
#   bash bench/gpu.sh            # from the repository root
# On a lent GPU machine ../shared is not sent: run `make gpu-pack` here first and carry
# target/release/selfsup, target/gpu-tests and target/gpu-shared (about 40 MB).
#   EXTRA=1 bash bench/gpu.sh    # and every diagnostic row of runs 1-2
#   DRY=1 bash bench/gpu.sh      # the script's plumbing on a CPU: tiny model, few steps, numbers meaningless
set -uo pipefail
cd "$(dirname "$0")/.."
# on a lent machine everything written under $OUT comes back: keep the whole log there too
if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then exec > >(tee -a "$OUT/gpu.log") 2>&1; fi
BIN=${BIN:-target/release/selfsup}
SHARED=${SHARED:-../shared}
[ -d "$SHARED/bench" ] || SHARED=target/gpu-shared
REF=${REF:-$SHARED/bench}
DATA=${DATA:-/tmp/cifar}
STEPS=${STEPS:-50}
DEV=cuda; BATCHES="256 512"; BIG=512; SIZE=""; LW=14; E2E="--steps 150 --warmup 20"; AUGN=20480; PC=5000; TSIZE=()
if [ "${DRY:-0}" = 1 ]; then
  DEV=cpu; BATCHES="8 16"; BIG=16; SIZE="--width 8 --hidden 64"; LW=2; E2E="--steps 3 --warmup 1"; AUGN=512; STEPS=2
  PC=10; TSIZE=(--set model.width=8 --set projector.hidden=64 --set predictor.hidden=64)
fi
# the binary's rpath points into the project venv; on the GPU machine use the installed torch
PY=python3
[ "${DRY:-0}" = 1 ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
TORCH_LIB=$($PY -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}"
if [ ! -d "$DATA/train" ]; then
  mkdir -p "$DATA" && tar -xzf "$SHARED/data/cifar10-jpeg.tar.gz" -C "$DATA"
fi
if [ -d "$REF/wheels" ] && ! python3 -c 'import lightly' 2>/dev/null; then
  python3 -m pip install -q --root-user-action=ignore --no-index --no-deps --target /tmp/site "$REF"/wheels/*.whl && export PYTHONPATH=/tmp/site
fi
# each row's finishing time (seconds since the start) beside the log, to plan a rerun in the lease
row() { echo "$1"; echo "${SECONDS}s ${1:0:70}" >> "${OUT:-/tmp}/gpu-times.log"; }
# every run's whole output is kept beside the log (loader waits, peak memory, the settings printed)
RUNS="${OUT:-/tmp}/gpu-runs.log"; : > "$RUNS"
ips() { tee -a "$RUNS" | field images_per_s; }
# one number of a RESULT line; the step rows also compare median step times (both step scripts
# print them), steadier than the mean on a machine whose steps jitter
field() { grep -o "$1=[0-9.]*" | head -1 | cut -d= -f2; }
ratio() { python3 -c "import sys; a,b=sys.argv[1:]; print(f'{float(a)/float(b):.2f}x' if a and b else 'n/a')" "$1" "$2" 2>/dev/null || echo n/a; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
echo
echo "| measurement | flags | selfsup images/s | reference images/s | ratio |"
echo "|---|---|---|---|---|"
STEP_OURS=""
declare -A OURS
for batch in $BATCHES; do
  for flags in "" "--amp --channels-last"; do
    rout=$(timeout 120 $PY "$REF/byol_step.py" --device $DEV --batch $batch --steps $STEPS $SIZE $flags 2>&1)
    oout=$(timeout 120 "$BIN" bench step --device $DEV --batch $batch --steps $STEPS $SIZE $flags 2>&1)
    printf '%s\n%s\n' "$rout" "$oout" >> "$RUNS"
    ref=$(echo "$rout" | field images_per_s); rmed=$(echo "$rout" | field median_ms)
    ours=$(echo "$oout" | field images_per_s); omed=$(echo "$oout" | field median_ms)
    [ "$batch" = $BIG ] && [ -n "$flags" ] && STEP_OURS=$ours
    OURS["$batch $flags"]=$ours
    row "| step (byol_step.py) | batch $batch ${flags:-f32} | ${ours:-fail} | ${ref:-fail} | $(ratio "$ours" "$ref") (median step: $(ratio "$rmed" "$omed")) |"
  done
done
lref=$(timeout 180 $PY "$REF/lightly_byol.py" --data "$DATA/train" --batch $BIG --workers $LW $E2E --device $DEV --amp 2>&1 | ips)
e2e=$(timeout 180 "$BIN" bench train --data "folder:$DATA@train" --device $DEV --batch $BIG $E2E $SIZE --amp --channels-last 2>&1 | ips)
# insurance for a one-shot GPU session: if the default (copies on the loader's side stream) fails,
# measure without it and say so in the table
CA=""
if [ -z "$e2e" ]; then
  e2e=$(timeout 180 "$BIN" bench train --data "folder:$DATA@train" --device $DEV --batch $BIG $E2E $SIZE --amp --channels-last --copy-ahead false 2>&1 | ips)
  CA=" --copy-ahead false (the default FAILED)"
fi
row "| end to end vs lightly ($LW workers) | batch $BIG --amp$CA | ${e2e:-fail} | ${lref:-fail} | $(ratio "$e2e" "$lref") |"
row "| end to end vs our step | batch $BIG --amp --channels-last$CA | ${e2e:-fail} | ${STEP_OURS:-fail} | $(ratio "$e2e" "$STEP_OURS") |"
# bench train at the end-to-end row's settings, with extra flags
e2 () { timeout 120 "$BIN" bench train --data "folder:$DATA@train" --device $DEV --batch $BIG $E2E $SIZE --amp --channels-last "$@" 2>&1 | ips; }
# experiment: the step captured as a CUDA graph and replayed (one launch per step instead of the
# ~20 ms of launches that bound the bf16 step at these sizes), alone and end to end
GSTEP=""; GOPS=""
for batch in $BATCHES; do
  gout=$(timeout 120 "$BIN" bench step --device $DEV --batch $batch --steps $STEPS $SIZE --amp --channels-last --cuda-graph --count-ops 2>&1); echo "$gout" >> "$RUNS"
  g=$(echo "$gout" | field images_per_s); [ "$batch" = $BIG ] && GSTEP=$g && GOPS=$(echo "$gout" | field ops_per_step)
  e=${OURS["$batch --amp --channels-last"]}
  row "| step, CUDA graph replay vs eager | batch $batch --amp --channels-last | ${g:-fail: $(echo "$gout" | grep -m1 -i error | cut -c1-100)} | ${e:-fail} | $(ratio "$g" "$e") |"
done
ge=$(e2 --cuda-graph)
row "| end to end, CUDA graph replay vs eager | batch $BIG --amp --channels-last | ${ge:-fail} | ${e2e:-fail} | $(ratio "$ge" "$e2e") |"
row "| end to end, CUDA graph replay vs lightly ($LW workers) | batch $BIG --amp | ${ge:-fail} | ${lref:-fail} | $(ratio "$ge" "$lref") |"
row "| end to end vs step, both CUDA graph replays | batch $BIG --amp --channels-last | ${ge:-fail} | ${GSTEP:-fail} | $(ratio "$ge" "$GSTEP") |"
# The trainer itself (selfsup train on all 50,000 training images: checkpoints off, kNN off),
# TEPOCHS epochs: the median of its logged images/s (a window per 10 steps, the first two left
# out: cuDNN's algorithm search, the graph's warm-up and capture), then the whole loop's
trn() {
  rm -rf /tmp/gpu-train
  timeout 150 "$BIN" train --config configs/presets/byol-cifar.toml --data "folder:$DATA@train?per_class=$PC" --device $DEV \
    --batch $BIG --epochs "${TEPOCHS:-2}" --out /tmp/gpu-train "${TSIZE[@]}" --quiet --json --set train.amp=true --set train.channels_last=true \
    --set eval.knn_every=0 --set eval.compare_random=false --set train.checkpoint_every=0 "$@" 2>/tmp/gpu-train.err \
    | python3 -c 'import json, statistics, sys; s = json.load(sys.stdin); w = [r["images_per_s"] for r in map(json.loads, open("/tmp/gpu-train/metrics.jsonl")) if "images_per_s" in r][2:]; print("%.1f (steady; whole loop %.1f, data wait %.1f%%%s)" % (statistics.median(w) if w else s["images_per_s"], s["images_per_s"], 100 * s["data_wait_fraction"], ", replayed" if s.get("cuda_graph") else ""))' 2>/dev/null
  { echo "selfsup train $*:"; cat /tmp/gpu-train.err; } >> "$RUNS"
}
# train.cuda_graph: forward and backward captured once and replayed, the optimiser and EMA eager
te=$(TEPOCHS=4 trn)
# the machine the eager run records in its summary.json (GPU name, compute capability, memory) vs nvidia-smi
mg=$(python3 -c 'import json; print(json.load(open("/tmp/gpu-train/summary.json"))["machine"].get("gpu", "absent"))' 2>/dev/null)
tg=$(TEPOCHS=4 trn --set train.cuda_graph=true)
row "| summary.json's machine.gpu vs nvidia-smi's name | | ${mg:-fail} | $(nvidia-smi --query-gpu=name --format=csv,noheader -i 0 2>/dev/null) | |"
row "| selfsup train, train.cuda_graph vs eager | batch $BIG --amp --channels-last, 4 epochs of $((PC * 10)) images | ${tg:-fail: $(grep -m1 -i error /tmp/gpu-train.err | cut -c1-100)} | ${te:-fail} | $(ratio "${tg%% *}" "${te%% *}") |"
row "| selfsup train with train.cuda_graph vs lightly ($LW workers) | batch $BIG --amp | ${tg:-fail} | ${lref:-fail} | $(ratio "${tg%% *}" "$lref") |"
row "| selfsup train with train.cuda_graph vs bench step, CUDA graph replay | batch $BIG --amp --channels-last | ${tg:-fail} | ${GSTEP:-fail} | $(ratio "${tg%% *}" "$GSTEP") |"
# correctness on the GPU (`make gpu-tests` here, carry target/gpu-tests): views made on the GPU
# equal the CPU pipeline's; batches copied ahead on the side stream arrive exactly as built; a
# replayed step (bench's whole step, train.cuda_graph's forward and backward) trains as the eager one
for t in target/gpu-tests/*; do
  [ -x "$t" ] || continue
  name=$(basename "$t" | sed 's/-[0-9a-f]*$//')
  timeout 180 "$t" --test-threads 1 --skip training_with > "/tmp/gpu-test-$name.log" 2>&1
  cat "/tmp/gpu-test-$name.log" >> "$RUNS"
  r=$(grep -m1 '^test result' "/tmp/gpu-test-$name.log" | cut -c14-60)
  why=$(grep -m1 -A2 'panicked' "/tmp/gpu-test-$name.log" | tr '\n|' '  ' | cut -c1-200)
  row "| tests/$name.rs on the device | | ${r:-fail} | $why | |"
done
# no host synchronisation inside the step: torch's sync debug mode set to error around every step
# (views made on the GPU too); the run fails naming the operation if anything waits for the device
rm -rf /tmp/gpu-syncdebug
sd_out=$(timeout 150 "$BIN" train --config configs/presets/byol-cifar.toml --data "folder:$DATA@train?per_class=$((PC / 2))" --device $DEV \
  --batch $BIG --epochs 2 --out /tmp/gpu-syncdebug "${TSIZE[@]}" --quiet --json --set train.amp=true --set train.channels_last=true \
  --set data.augment_on=gpu --set eval.knn_every=0 --set eval.compare_random=false --set train.checkpoint_every=0 \
  --set train.sync_debug=true 2>&1)
if echo "$sd_out" | grep -q '"images_per_s"'; then sd="none (2 epochs)"; else sd="FOUND: $(echo "$sd_out" | grep -m1 -i 'synchroniz\|error' | cut -c1-120)"; fi
row "| host syncs inside the step (train.sync_debug) | byol, batch $BIG --amp, views on the GPU | $sd | | |"
# the host's share of a step: ATen operators one step dispatches (every thread), ours eager and as
# a graph replay vs byol_step.py's (bench/count_ops.py: two profiled runs, the difference per step)
oe=$(timeout 120 "$BIN" bench step --device $DEV --batch $BIG --steps 3 $SIZE --amp --channels-last --count-ops 2>&1 | tee -a "$RUNS" | field ops_per_step)
pe=$(timeout 150 $PY bench/count_ops.py --script "$REF/byol_step.py" -- --device $DEV --batch $BIG $SIZE --amp --channels-last 2>&1 | tee -a "$RUNS" | field ops_per_step)
row "| ATen operators per step: ours eager (graph replay: ${GOPS:-n/a}) vs byol_step.py | batch $BIG --amp --channels-last | ${oe:-fail} | ${pe:-fail} | $(ratio "$oe" "$pe") |"
# few loader threads: about 20 k samples/s keep the step fed and 16 threads make 100 k+, so fewer
# may leave the thread that launches the step a core (and its clock) to itself
q4=$(e2 --workers 4); q8=$(e2 --workers 8)
row "| end to end, 4 vs 8 loader threads | batch $BIG --amp --channels-last | ${q4:-fail} | ${q8:-fail} | $(ratio "$q4" "$q8") |"
[ "${EXTRA:-0}" = 1 ] || exit 0
# the spread of the end-to-end number (one run of 150 steps), and the loader's settings around the
# defaults: loader threads one per core (default) vs one per core but one (a core left to the
# thread that launches the step's kernels), copies on a side stream (default) or by the step's thread
r2=$(e2); r3=$(e2)
row "| end to end, repeats of the default | batch $BIG --amp --channels-last | ${r2:-fail} | ${r3:-fail} | $(ratio "$r2" "$r3") |"
w1=$(e2 --workers "$(($(nproc) - 1))"); w2=$(e2 --workers "$(($(nproc) - 1))")
row "| end to end, loader threads one per core but one ($(($(nproc) - 1))), twice | batch $BIG --amp --channels-last | ${w1:-fail} | ${w2:-fail} | $(ratio "$w1" "$w2") |"
c1=$(e2 --copy-ahead false); c2=$(e2 --copy-ahead false)
row "| end to end, copies by the step's thread, twice | batch $BIG --amp --channels-last | ${c1:-fail} | ${c2:-fail} | $(ratio "$c1" "$c2") |"
s1=$(e2 --augment-on split --copy-ahead false)
row "| end to end, views split, copies by the step's thread vs default | batch $BIG --amp --channels-last | ${s1:-fail} | ${e2e:-fail} | $(ratio "$s1" "$e2e") |"
# views made on the GPU from decoded images (data.augment_on=gpu) instead of on the loader's threads
e2e_dev=$(timeout 180 "$BIN" bench train --data "folder:$DATA@train" --device $DEV --batch $BIG $E2E $SIZE --amp --channels-last --augment-on gpu 2>&1 | ips)
row "| end to end, views on the GPU vs on loader threads | batch $BIG --amp --channels-last | ${e2e_dev:-fail} | ${e2e:-fail} | $(ratio "$e2e_dev" "$e2e") |"
# split: crops made on the loader's threads, colour work on the GPU (for large images)
e2e_split=$(timeout 180 "$BIN" bench train --data "folder:$DATA@train" --device $DEV --batch $BIG $E2E $SIZE --amp --channels-last --augment-on split 2>&1 | ips)
row "| end to end, views split (crops on loader threads, colour on the GPU) vs on loader threads | batch $BIG --amp --channels-last | ${e2e_split:-fail} | ${e2e:-fail} | $(ratio "$e2e_split" "$e2e") |"
# copies: on the loader's side stream as soon as a batch is built (data.copy_ahead, default) vs
# queued by the training thread on the default stream when it takes the batch
e2e_nca=$(timeout 180 "$BIN" bench train --data "folder:$DATA@train" --device $DEV --batch $BIG $E2E $SIZE --amp --channels-last --copy-ahead false 2>&1 | ips)
row "| end to end, copies on a side stream vs by the step's thread | batch $BIG --amp --channels-last | ${e2e:-fail} | ${e2e_nca:-fail} | $(ratio "$e2e" "$e2e_nca") |"
# augmentation alone: batched on the GPU vs the per-image pipeline on all 16 CPU cores
aug_gpu=$(timeout 120 "$BIN" bench augment --data "folder:$DATA@train" --recipe byol-cifar --device $DEV --batch $BIG --samples $AUGN 2>&1 | field samples_per_s)
aug_cpu=$(timeout 120 "$BIN" bench augment --data "folder:$DATA@train" --recipe byol-cifar --threads "$(nproc)" --samples $AUGN 2>&1 | field samples_per_s)
row "| augmentation samples/s (2 views), GPU batched vs $(nproc) CPU threads | byol-cifar, batch $BIG | ${aug_gpu:-fail} | ${aug_cpu:-fail} | $(ratio "$aug_gpu" "$aug_cpu") |"
t10=$(trn --set train.sync_every=10)
t1=$(trn --set train.sync_every=1)
row "| selfsup train, reads every 10 vs every step | batch $BIG --amp --channels-last, 2 epochs of $((PC * 10)) images | ${t10:-fail} | ${t1:-fail} | $(ratio "${t10%% *}" "${t1%% *}") |"
row "| selfsup train vs bench train | batch $BIG --amp --channels-last | ${t10:-fail} | ${e2e:-fail} | $(ratio "${t10%% *}" "$e2e") |"
# data parallel on one GPU: `launch --nproc 1 --backend nccl|gloo` forms a process group of one, so
# every collective runs (weights' broadcast, gradient all-reduce, synchronised BN) through NCCL vs
# through Gloo (host copies); the final losses should agree
lch() {
  rm -rf "/tmp/gpu-launch-$1"
  timeout 150 "$BIN" launch --nproc 1 --backend "$1" -- train --config configs/presets/byol-cifar.toml --data "folder:$DATA@train?per_class=$((PC / 2))" \
    --device $DEV --batch $BIG --epochs 2 --out "/tmp/gpu-launch-$1" "${TSIZE[@]}" --quiet --json --set train.amp=true --set train.channels_last=true \
    --set model.norm='"syncbn"' --set eval.knn_every=0 --set eval.compare_random=false --set train.checkpoint_every=0 2>"/tmp/gpu-launch-$1.err" \
    | python3 -c 'import json, sys; s = json.load(sys.stdin); print("%.1f (%s, final loss %.4f)" % (s["images_per_s"], s.get("process_group"), s["final_loss"]))' 2>/dev/null \
    || echo "fail: $(grep -m1 -i 'error' "/tmp/gpu-launch-$1.err" | cut -c1-120)"
}
dn=$(lch nccl)
dg=$(lch gloo)
row "| data parallel, group of one: NCCL vs Gloo | byol syncbn, batch $BIG --amp --channels-last | $dn | $dg | $(ratio "${dn%% *}" "${dg%% *}") |"
