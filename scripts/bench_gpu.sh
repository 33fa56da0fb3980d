#!/usr/bin/env bash
# Every GPU check in one call (about 8 minutes on an H100): device facts, training throughput
# against PyTorch eager and the Flax-examples loop, time to 99 % MNIST test accuracy (warm, and
# cold with a warm compile cache), a full `fit` smoke run, per-kernel profiles of the LeNet-5
# step, and a 64-member population against one standalone run (issue 5; twice: the first
# process fills the compile cache; then as whole commands).
#
#   LEPTON_MNIST_ROOT=/path/to/mnist bash scripts/bench_gpu.sh OUT_DIR
# Needs jax with CUDA, flax, optax, orbax-checkpoint, torch; run from the repo root.
#
#   BENCH_SMOKE=1 bash scripts/bench_gpu.sh OUT_DIR
# runs every step at toy sizes (about 3 minutes on a 2-core CPU), so that a broken step shows
# here, not in a GPU session's few minutes (tests/test_bench_scripts.py does it).
set -uo pipefail
OUT=${1:-experiments/benchmarks}
MNIST=${LEPTON_MNIST_ROOT:-../shared/data/mnist}
export PYTHONPATH=.:${PYTHONPATH:-} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
if [ "${BENCH_SMOKE:-0}" = 1 ]; then
  THROUGHPUT=(--limit 1280 --rounds 2 --cases lenet5:128,mlp:128)
  TTA=(--time-to-accuracy 0.5 --tta-recipes 256:1:0.1)
  FIT_EPOCHS=1 FIT_LIMIT=2560 PROFILE=(--calls 2 --top 5) BIG=256 SPC=(2 2 2) MEMBERS=4
  POPULATION=(--tiny) REPEATS=1
else
  THROUGHPUT=(--limit 0 --rounds 5 --cases lenet5:128,lenet5:1024,lenet5:8192,mlp:128,mlp:1024)
  TTA=(--time-to-accuracy 0.99 --tta-recipes 128:5:0.1,512:6:0.2,1024:8:0.3)
  FIT_EPOCHS=5 FIT_LIMIT=0 PROFILE=(--calls 5 --top 25) BIG=8192 SPC=(100 7 78) MEMBERS=64
  POPULATION=() REPEATS=2
fi
failed=0
step() {  # runs one step; a failed one is named at the end, and the others still run
  "$@" || { echo "FAILED: $*" >&2; failed=1; }
}
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
step python3 -c "import jax, flax, optax; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__)"
TORCH=()
python3 -c "import torch; print('torch', torch.__version__)" || { TORCH=(--no-torch); echo "no torch: the PyTorch baseline is left out" >&2; }

step python3 scripts/bench.py --mnist "$MNIST" "${THROUGHPUT[@]}" "${TORCH[@]}" \
  --out "$OUT/gpu_throughput.json"

step python3 scripts/bench.py --mnist "$MNIST" --cases "" "${TTA[@]}" --cold \
  --out "$OUT/gpu_time_to_99.json"

step python3 - "$MNIST" "$FIT_EPOCHS" "$FIT_LIMIT" <<'PY'
import sys, tempfile
from lepton_jax import Config, DataConfig, ModelConfig, OptimConfig, TrainerConfig, fit
root, epochs, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) or None
cfg = Config(model=ModelConfig(name="lenet5"), data=DataConfig(name="mnist", root=root, limit=limit),
             optim=OptimConfig(lr=0.1, nesterov=True, weight_decay=5e-4, schedule="one_cycle"),
             trainer=TrainerConfig(epochs=epochs, batch_size=128, progress="plain"))
fit(cfg, tempfile.mkdtemp())
PY

# Where the LeNet-5 step's time goes on the GPU: per-kernel tables (PERF_NOTES' first lead).
step python3 scripts/profile_step.py --model lenet5 --batch 128 --steps-per-call "${SPC[0]}" \
  "${PROFILE[@]}" --out "$OUT/gpu_profile_lenet5_b128.json"
step python3 scripts/profile_step.py --model lenet5 --batch "$BIG" --steps-per-call "${SPC[1]}" \
  "${PROFILE[@]}" --out "$OUT/gpu_profile_lenet5_b$BIG.json"
# The 64-member MLP population's step (issue 5), one epoch of 10,000 images per call.
step python3 scripts/profile_step.py --model mlp --population "$MEMBERS" --steps-per-call "${SPC[2]}" \
  "${PROFILE[@]}" --out "$OUT/gpu_profile_population${MEMBERS}_mlp.json"

for run in cold warm; do
  step python3 scripts/bench_population.py --mnist "$MNIST" --standalone-vs-population "$MEMBERS" \
    "${POPULATION[@]}" --out "$OUT/gpu_population${MEMBERS}_$run.json"
done
# The same as the commands a user types: one run vs the 64-point vectorized multirun (needs
# hydra-core: the wheels in ../shared/ENV_NOTES.md).
step python3 scripts/bench_population.py --mnist "$MNIST" --standalone-vs-population "$MEMBERS" \
  "${POPULATION[@]}" --commands --repeats "$REPEATS" --out "$OUT/gpu_population${MEMBERS}_commands.json"
exit $failed
