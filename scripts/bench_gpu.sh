#!/usr/bin/env bash
# Every GPU check in one call (about 8 minutes on an H100): device facts, training throughput
# against PyTorch eager and the Flax-examples loop, time to 99 % MNIST test accuracy (warm, and
# cold with a warm compile cache), a full `fit` smoke run, per-kernel profiles of the LeNet-5
# step, and a 64-member population against one standalone run (issue 5; twice: the first
# process fills the compile cache; then as whole commands).
#
#   LEPTON_MNIST_ROOT=/path/to/mnist bash scripts/bench_gpu.sh OUT_DIR
# Needs jax with CUDA, flax, optax, orbax-checkpoint, torch; run from the repo root.
set -uo pipefail
OUT=${1:-experiments/benchmarks}
MNIST=${LEPTON_MNIST_ROOT:-../shared/data/mnist}
export PYTHONPATH=.:${PYTHONPATH:-} PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import jax, flax, optax, torch; print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__)"

python3 scripts/bench.py --mnist "$MNIST" --limit 0 --rounds 5 \
  --cases lenet5:128,lenet5:1024,lenet5:8192,mlp:128,mlp:1024 --out "$OUT/gpu_throughput.json"

python3 scripts/bench.py --mnist "$MNIST" --cases "" --time-to-accuracy 0.99 --cold \
  --tta-recipes 128:5:0.1,512:6:0.2,1024:8:0.3 --out "$OUT/gpu_time_to_99.json"

python3 - "$MNIST" <<'PY'
import sys, tempfile
from lepton_jax import Config, DataConfig, ModelConfig, OptimConfig, TrainerConfig, fit
cfg = Config(model=ModelConfig(name="lenet5"), data=DataConfig(name="mnist", root=sys.argv[1]),
             optim=OptimConfig(lr=0.1, nesterov=True, weight_decay=5e-4, schedule="one_cycle"),
             trainer=TrainerConfig(epochs=5, batch_size=128, progress="plain"))
fit(cfg, tempfile.mkdtemp())
PY

# Where the LeNet-5 step's time goes on the GPU: per-kernel tables (PERF_NOTES' first lead).
python3 scripts/profile_step.py --model lenet5 --batch 128 --steps-per-call 100 --calls 5 \
  --top 25 --out "$OUT/gpu_profile_lenet5_b128.json"
python3 scripts/profile_step.py --model lenet5 --batch 8192 --steps-per-call 7 --calls 5 \
  --top 25 --out "$OUT/gpu_profile_lenet5_b8192.json"
# The 64-member MLP population's step (issue 5), one epoch of 10,000 images per call.
python3 scripts/profile_step.py --model mlp --population 64 --steps-per-call 78 --calls 5 \
  --top 25 --out "$OUT/gpu_profile_population64_mlp.json"

for run in cold warm; do
  python3 scripts/bench_population.py --mnist "$MNIST" --standalone-vs-population 64 \
    --out "$OUT/gpu_population64_$run.json"
done
# The same as the commands a user types: one run vs the 64-point vectorized multirun (needs
# hydra-core: the wheels in ../shared/ENV_NOTES.md).
python3 scripts/bench_population.py --mnist "$MNIST" --standalone-vs-population 64 --commands \
  --repeats 2 --out "$OUT/gpu_population64_commands.json"
