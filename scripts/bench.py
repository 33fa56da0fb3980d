"""Training throughput: lepton_jax vs PyTorch eager vs the Flax-examples loop, same process.

Each round runs one epoch of every competitor in turn (alternating, so machine noise hits all
alike); the table reports the median samples/s over the rounds after the first (compile and
warm-up) and the ratios. Writes JSON with machine, device, jax version and commit.

    python scripts/bench.py                       # CPU defaults
    python scripts/bench.py --cases lenet5:128,lenet5:1024,lenet5:8192 --limit 0   # GPU
    python scripts/bench.py --time-to-accuracy 0.99   # + LeNet-5 recipe to 99 % (warm/cold)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# Grow GPU memory on demand instead of preallocating 75 %: the cold-start children share the GPU.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from lepton_jax.config import ModelConfig, OptimConfig, TrainerConfig  # noqa: E402
from lepton_jax.data.mnist import load_mnist  # noqa: E402
from lepton_jax.models import build_model  # noqa: E402
from lepton_jax.optim import make_optimizer  # noqa: E402
from lepton_jax.loop import Cadence, drive, resolve_steps_per_call  # noqa: E402
from lepton_jax.parallel import DataParallel, calls_ahead  # noqa: E402
from lepton_jax.progress import StepProgress  # noqa: E402
from lepton_jax.state import create_state  # noqa: E402
from lepton_jax.step import epoch_permutation, make_train_step  # noqa: E402

MODELS = {"lenet5": ModelConfig(name="lenet5"), "mlp": ModelConfig(name="mlp", hidden=[512, 512])}


# One compiled epoch-order program for every loop below.
_PERMUTE = jax.jit(epoch_permutation, static_argnums=2)


def trainer_epochs(dp, make_step, xd, yd, state, k, epochs):
    """The trainer's own host loop (`loop.drive`, as `fit` runs it: fused calls of `k` steps,
    the epoch order drawn on the device) from `state` over the resident `xd, yd`; yields
    `(state, losses)` at the end of each of `epochs` epochs. The compiled steps live in `dp`,
    so a second loop over the same `dp` compiles nothing."""
    steps = len(xd) // dp.batch_size

    def run_call(kk):
        run = dp.steps(make_step, kk)
        return lambda state, perm, offset: run(state, xd, yd, perm, offset)

    trainer = TrainerConfig(epochs=epochs, batch_size=dp.batch_size, eval_every_epochs=1,
                            checkpoint_every_epochs=0)
    cadence = Cadence(trainer, steps, steps * epochs)
    boundaries = drive(state, run_call, _PERMUTE, cadence, k, len(xd), dp.batch_size,
                       StepProgress(cadence.total_steps, 0, "off"),
                       ahead=calls_ahead(list(dp.mesh.devices.flat)))
    for new_state, _, losses, _, _ in boundaries:
        yield new_state, losses


def _steps_per_call(steps_per_call, steps: int) -> int:
    """What the trainer's `trainer.steps_per_call` resolves to here (`auto`: per backend and
    device count, `loop.resolve_steps_per_call`)."""
    return resolve_steps_per_call(TrainerConfig(steps_per_call=str(steps_per_call)),
                                  jax.devices()[0].platform, steps,
                                  num_devices=jax.device_count())


class Ours:
    """lepton_jax's trainer loop (`trainer_epochs`): data resident on the device, fused steps,
    donated state; one epoch per `run_epoch`."""

    name = "lepton_jax"

    def __init__(self, model_name, batch, x, y, steps_per_call, ynn=None):
        model = build_model(MODELS[model_name], 10)
        steps = len(x) // batch
        tx = make_optimizer(OptimConfig(lr=0.05, momentum=0.9, schedule="constant"),
                            steps * 100, steps)
        dp = DataParallel("single" if jax.device_count() == 1 else "jit", jax.devices(), batch)
        ynn_key = "xla_cpu_experimental_ynn_fusion_type"
        shipped = {k: v for k, v in (dp.compiler_options or {}).items() if k != ynn_key}
        if ynn == "default":  # XLA:CPU's own default, which the trainer turns off
            dp.compiler_options = shipped or None  # (parallel.compiler_options)
            self.name = "lepton_jax+ynn"
        elif ynn == "dot":  # YNNPACK for dots only
            dp.compiler_options = {**shipped, ynn_key: "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"}
            self.name = "lepton_jax+ynn_dot"
        state = dp.replicate(create_state(model, tx, x.shape[1:], 0))
        xd, yd = dp.replicate((x, y))
        self.k = _steps_per_call(steps_per_call, steps)

        def make_step(axis):
            return make_train_step(model, tx, "classification", axis)

        # As many epochs as the benchmark asks for.
        self._epochs = trainer_epochs(dp, make_step, xd, yd, state, self.k, 10**6)

    def run_epoch(self):
        state, losses = next(self._epochs)
        jax.block_until_ready(state.params)
        return float(losses[-1])


class FlaxLeNet5(nn.Module):
    """LeNet-5 written as the Flax examples write a CNN: `nn.Conv` and `nn.max_pool`."""

    @nn.compact
    def __call__(self, x):
        x = nn.max_pool(nn.relu(nn.Conv(6, (5, 5), padding="SAME")(x)), (2, 2), (2, 2))
        x = nn.max_pool(nn.relu(nn.Conv(16, (5, 5), padding="VALID")(x)), (2, 2), (2, 2))
        x = x.reshape((x.shape[0], -1))
        x = nn.relu(nn.Dense(120)(x))
        x = nn.relu(nn.Dense(84)(x))
        return nn.Dense(10)(x)


class FlaxExamples:
    """The flax examples/mnist pattern: a jitted step fed one numpy batch at a time."""

    name = "flax_loop"

    def __init__(self, model_name, batch, x, y):
        from flax.training import train_state

        model = FlaxLeNet5() if model_name == "lenet5" else build_model(MODELS[model_name], 10)
        params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, *x.shape[1:])))["params"]
        self.state = train_state.TrainState.create(apply_fn=model.apply, params=params,
                                                   tx=optax.sgd(0.05, momentum=0.9))
        self.x, self.y, self.batch = x, y, batch
        self.rng = np.random.default_rng(0)

        @jax.jit
        def step(state, xb, yb):
            def loss_fn(p):
                logits = state.apply_fn({"params": p}, xb)
                return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

            loss, grads = jax.value_and_grad(loss_fn)(state.params)
            return state.apply_gradients(grads=grads), loss

        self.step = step

    def run_epoch(self):
        perm = self.rng.permutation(len(self.x))
        for i in range(len(self.x) // self.batch):
            idx = perm[i * self.batch:(i + 1) * self.batch]
            self.state, loss = self.step(self.state, self.x[idx], self.y[idx])
        return float(loss)


class TorchEager:
    """PyTorch eager with the training tensors preloaded on the device."""

    name = "torch_eager"

    def __init__(self, model_name, batch, x, y):
        import torch
        from torch import nn

        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if model_name == "lenet5":
            net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                                nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                                nn.Linear(84, 10))
            xt = torch.tensor(x.transpose(0, 3, 1, 2))  # a copy: the cached MNIST is read-only
        else:
            net = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512),
                                nn.ReLU(), nn.Linear(512, 10))
            xt = torch.tensor(x)
        self.net = net.to(self.device)
        self.x, self.y = xt.to(self.device), torch.from_numpy(y.astype(np.int64)).to(self.device)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.05, momentum=0.9)
        self.loss = nn.CrossEntropyLoss()
        self.batch = batch

    def run_epoch(self):
        torch = self.torch
        perm = torch.randperm(len(self.x), device=self.device)
        for i in range(len(self.x) // self.batch):
            idx = perm[i * self.batch:(i + 1) * self.batch]
            self.opt.zero_grad(set_to_none=True)
            loss = self.loss(self.net(self.x[idx]), self.y[idx])
            loss.backward()
            self.opt.step()
        if self.device == "cuda":
            torch.cuda.synchronize()
        return loss.item()


def bench_case(model_name, batch, x, y, rounds, steps_per_call, with_torch, with_ynn=None):
    competitors = [Ours(model_name, batch, x, y, steps_per_call), FlaxExamples(model_name, batch, x, y)]
    if with_ynn:
        competitors.insert(1, Ours(model_name, batch, x, y, steps_per_call, ynn=with_ynn))
    if with_torch:
        competitors.append(TorchEager(model_name, batch, x, y))
    samples = (len(x) // batch) * batch
    times = {c.name: [] for c in competitors}
    for _ in range(rounds):
        for c in competitors:
            t0 = time.perf_counter()
            c.run_epoch()
            times[c.name].append(time.perf_counter() - t0)
    rate = {n: samples / statistics.median(t[1:]) for n, t in times.items()}
    row = {"model": model_name, "batch": batch, "samples_per_epoch": samples,
           "steps_per_call": competitors[0].k, "samples_per_s": rate,
           "first_epoch_s": {n: t[0] for n, t in times.items()}}
    for other in rate:
        if other != "lepton_jax":
            row[f"ratio_vs_{other}"] = rate["lepton_jax"] / rate[other]
    return row


def time_to_accuracy(x, y, xt, yt, target, batch, epochs, lr, warm=True):
    """Seconds of training (compile excluded: a full first pass warms every program) until the
    LeNet-5 one-cycle recipe reaches `target` test accuracy, evaluated after every epoch."""
    from lepton_jax.step import make_predict

    model = build_model(MODELS["lenet5"], 10)
    steps = len(x) // batch
    cfg = OptimConfig(lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="one_cycle")
    tx = make_optimizer(cfg, steps * epochs, steps)
    dp = DataParallel("single" if jax.device_count() == 1 else "jit", jax.devices(), batch)
    xd, yd, xtd = dp.replicate((x, y, xt))
    predict = jax.jit(lambda p, v: jnp.argmax(make_predict(model)(p, v), -1))

    def make_step(axis):
        return make_train_step(model, tx, "classification", axis)

    def attempt():
        state = dp.replicate(create_state(model, tx, x.shape[1:], 0))
        t0 = time.perf_counter()
        history = []
        epochs_run = trainer_epochs(dp, make_step, xd, yd, state, _steps_per_call("auto", steps),
                                    epochs)
        for epoch, (state, _) in enumerate(epochs_run, 1):
            acc = float((np.asarray(predict(state.params, xtd)) == yt).mean())
            history.append((epoch, time.perf_counter() - t0, acc))
            if acc >= target:
                break
        return history

    if not warm:  # a fresh process: compile (from the persistent cache, if warm) is included
        history = attempt()
        return {"target": target, "batch": batch, "epochs_max": epochs, "peak_lr": lr,
                "reached": history[-1][2] >= target, "history": history}
    attempt()  # compiles everything
    history = attempt()
    reached = history[-1][2] >= target
    return {"target": target, "batch": batch, "epochs_max": epochs, "peak_lr": lr,
            "reached": reached, "seconds": history[-1][1] if reached else None,
            "history": history}


def cold_time_to_accuracy(args, batch, epochs, lr):
    """Wall time of a fresh process (imports, data, compile from a warm cache, training) to
    reach the target; the first process fills the compilation cache and is not counted."""
    cmd = [sys.executable, __file__, "--tta-child", "--mnist", args.mnist,
           "--time-to-accuracy", str(args.time_to_accuracy), "--tta-recipes",
           f"{batch}:{epochs}:{lr}", "--cache", args.cache]
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        if out.returncode:
            raise RuntimeError(out.stderr[-2000:])
    child = json.loads(out.stdout.strip().splitlines()[-1])
    return {"first_process_s": walls[0], "warm_cache_process_s": statistics.median(walls[1:]),
            "reached": child["reached"], "history": child["history"]}


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC", "Intel(R) Xeon(R) ..."): the VM behind this project has
    changed between sessions, and ratios against PyTorch differ by CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    """`package`'s installed version, None where it is not installed."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def environment():
    commit = os.environ.get("LEPTON_COMMIT")  # set where the tree travels without .git
    try:
        commit = commit or subprocess.check_output(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
            stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    dev = jax.devices()[0]
    return {"machine": platform.node(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "jax": jax.__version__,
            "torch": _version("torch"), "backend": dev.platform,
            "device": getattr(dev, "device_kind", str(dev)), "device_count": jax.device_count(),
            "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mnist", default=os.environ.get("LEPTON_MNIST_ROOT",
                                                     str(REPO.parent / "shared/data/mnist")))
    p.add_argument("--cases", default="lenet5:128,lenet5:1024,mlp:128,mlp:1024")
    p.add_argument("--limit", type=int, default=12800,
                   help="training images per epoch (0: all 60,000)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--steps-per-call", default="auto")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--ynn", nargs="?", const="default", choices=["default", "dot"],
                   help="also time the trainer with XLA:CPU's YNNPACK fusions on: `default` "
                        "(XLA's own default, which lepton_jax turns off: "
                        "parallel.compiler_options) or `dot` (YNNPACK for dots only)")
    p.add_argument("--time-to-accuracy", type=float, default=0.0)
    p.add_argument("--tta-recipes", default="128:5:0.1",
                   help="LeNet-5 one-cycle recipes batch:epochs:peak_lr, comma-separated")
    p.add_argument("--cold", action="store_true", help="also time fresh processes")
    p.add_argument("--cache", default=str(Path.home() / ".cache/lepton_jax/bench_xla"))
    p.add_argument("--tta-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    recipes = [(int(b), int(e), float(lr)) for b, e, lr in
               (r.split(":") for r in args.tta_recipes.split(","))]

    if args.tta_child:
        from lepton_jax.compile_cache import enable_compilation_cache

        enable_compilation_cache(args.cache)
        (x, y), (xt, yt) = load_mnist(args.mnist)
        print(json.dumps(time_to_accuracy(x, y, xt, yt, args.time_to_accuracy, *recipes[0],
                                          warm=False)))
        return

    (x, y), (xt, yt) = load_mnist(args.mnist)
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    env = environment()
    print(json.dumps(env))
    rows = []
    for case in filter(None, args.cases.split(",")):
        name, batch = case.split(":")
        spc = args.steps_per_call if args.steps_per_call in ("auto", "epoch") else int(args.steps_per_call)
        row = bench_case(name, int(batch), x, y, args.rounds, spc, not args.no_torch, args.ynn)
        rows.append(row)
        rates = "  ".join(f"{n} {r / 1e3:8.1f} k/s" for n, r in row["samples_per_s"].items())
        ratios = "  ".join(f"{k[9:]} x{v:.2f}" for k, v in row.items() if k.startswith("ratio_vs_"))
        print(f"{name:7s} b{batch:<5s} k={row['steps_per_call']:<4} {rates}  | ours vs {ratios}",
              flush=True)
    result = {"env": env, "args": vars(args), "throughput": rows}
    if args.time_to_accuracy:
        (x, y), _ = load_mnist(args.mnist)
        result["time_to_accuracy"] = []
        for batch, epochs, lr in recipes:
            tta = time_to_accuracy(x, y, xt, yt, args.time_to_accuracy, batch, epochs, lr)
            if args.cold:
                tta["cold"] = cold_time_to_accuracy(args, batch, epochs, lr)
            result["time_to_accuracy"].append(tta)
            print(f"LeNet-5 b{batch} {epochs} ep peak lr {lr}: time to "
                  f"{args.time_to_accuracy:.2%} test accuracy warm {tta['seconds']} s, "
                  f"cold {tta.get('cold', {}).get('warm_cache_process_s')}; "
                  f"(epoch, s, acc): {[(e, round(t, 3), a) for e, t, a in tta['history']]}",
                  flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
