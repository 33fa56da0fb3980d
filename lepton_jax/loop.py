"""`fit(config, workdir)`: the training loop around the pure step (eval, checkpoints, logs)."""

from __future__ import annotations

import json
import numbers
import os
import time
from pathlib import Path
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from lepton_jax import config as config_lib
from lepton_jax.checkpoint import CheckpointMismatch, Checkpointer
from lepton_jax.compile_cache import enable_compilation_cache
from lepton_jax.config import Config, TrainerConfig
from lepton_jax.data import DataSplits, load_dataset
from lepton_jax.data.splits import inputs_label, target_label
from lepton_jax.errors import DivergedError, Interrupted, UserError
from lepton_jax.metrics import REPORTED, compute_metrics
from lepton_jax.modelfile import jsonable
from lepton_jax.models import build_model, check_data, count_params
from lepton_jax.optim import make_optimizer
from lepton_jax.parallel import (DataParallel, calls_ahead, default_steps_per_call,
                                 initialize_processes, local_devices, resolve_strategy, to_host,
                                 unstack_members, wait_behind)
from lepton_jax.progress import StepProgress
from lepton_jax.state import create_state
from lepton_jax.step import epoch_permutation, make_predict, make_train_step
from lepton_jax.stopping import (Best, StopRequest, best_kept, early_line, early_stop,
                                 evaluations, stop_on_interrupt)
from lepton_jax.writers import (JsonlWriter, LineWriter, MultiWriter, WandbWriter, echo,
                                metric_value, read_records, short_value)


def host_loss(task: str, y: np.ndarray, outputs: np.ndarray) -> float:
    """Mean cross-entropy or MSE computed in float64 on the host."""
    outputs = outputs.astype(np.float64)
    if task == "classification":
        shifted = outputs - outputs.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-log_probs[np.arange(len(y)), y].mean())
    return float(((outputs - y) ** 2).mean())


class Evaluator:
    """Predicts a whole split in fixed-size chunks on the device (one compile per split)."""

    def __init__(self, model, data: DataSplits, chunk: int, place,
                 population: Optional[str] = None,
                 compiler_options: Optional[dict[str, str]] = None):
        """`population`: params carry a leading member axis, predicted as the population
        trains (`DataParallel.population_steps` mode "vmap", or "host": each member through
        the single run's program); None for a single run. `compiler_options`: XLA options
        for the prediction program (`parallel.compiler_options`)."""
        self.data = data
        self.population = population
        self._predict = make_predict(model)
        self._splits = {}
        for name in ("val", "test"):
            x, y = getattr(data, f"x_{name}"), getattr(data, f"y_{name}")
            if len(x) == 0:
                continue
            # As few chunks of at most `chunk` rows as possible, of equal size: the padding
            # is then less than one row per chunk (3,000 rows in chunks of 2,048 would
            # otherwise predict 4,096).
            count = -(-len(x) // chunk)
            size = -(-len(x) // count)
            pad = size * count - len(x)
            padded = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            self._splits[name] = (place(padded), y, size)
        predict_all = self._predict_all
        if population not in (None, "host"):
            def predict_all(params, x, size):
                return jax.vmap(lambda p: self._predict_all(p, x, size))(params)
        self._jitted = jax.jit(predict_all, static_argnums=2, compiler_options=compiler_options)
        # The newest predictions per split, by training step: the final evaluation reuses
        # those of the periodic one at the same step instead of predicting the split again.
        self._newest: dict[str, tuple[int, object]] = {}

    def _predict_all(self, params, x, size):
        chunks = x.reshape(-1, size, *x.shape[1:])
        out = jax.lax.map(lambda c: self._predict(params, c), chunks)
        return out.reshape(-1, out.shape[-1])

    def splits(self) -> list[str]:
        return list(self._splits)

    def __call__(self, params, split: str, with_confusion: bool = False,
                 step: Optional[int] = None):
        """Metrics of `split`; a list with one dict per member for a population.

        `step`: the training step `params` belong to; a second call for the same split and
        step reuses the first call's predictions."""
        x, y, size = self._splits[split]
        if step is not None and self._newest.get(split, (None,))[0] == step:
            outputs = self._newest[split][1]
        elif self.population == "host":
            outputs = [to_host(self._jitted(p, x, size)) for p in unstack_members(params)]
        else:
            outputs = to_host(self._jitted(params, x, size))
        if step is not None:
            self._newest[split] = (step, outputs)
        if self.population is not None:
            return [self._metrics(y, out[: len(y)], with_confusion) for out in outputs]
        return self._metrics(y, outputs[: len(y)], with_confusion)

    def _metrics(self, y, outputs, with_confusion: bool) -> dict:
        # The loss as training computes it (on standardized regression targets, if they
        # are); the other metrics in the target's own units.
        loss = host_loss(self.data.task, y, outputs)
        if self.data.task == "regression":
            y, outputs = self.data.target_units(y), self.data.target_units(outputs)
        metrics = compute_metrics(self.data.task, y, outputs, self.data.num_classes)
        metrics["loss"] = loss
        if not with_confusion:
            metrics.pop("confusion", None)
        return metrics


class Cadence:
    """When to evaluate and checkpoint, and where a fused call must stop (host-side only)."""

    def __init__(self, trainer: TrainerConfig, steps_per_epoch: int, total_steps: int):
        self.t, self.steps_per_epoch, self.total_steps = trainer, steps_per_epoch, total_steps

    def _due(self, step: int, every_steps: int, every_epochs: int) -> bool:
        at_epoch_end = step % self.steps_per_epoch == 0
        return (step == self.total_steps or bool(every_steps and step % every_steps == 0)
                or bool(at_epoch_end and every_epochs
                        and (step // self.steps_per_epoch) % every_epochs == 0))

    def eval_due(self, step: int) -> bool:
        return self._due(step, self.t.eval_every_steps, self.t.eval_every_epochs)

    def checkpoint_due(self, step: int) -> bool:
        return self._due(step, self.t.checkpoint_every_steps, self.t.checkpoint_every_epochs)

    def next_boundary(self, step: int) -> int:
        """The next step at which the host must look: an epoch end, an eval or a checkpoint."""
        marks = [(step // self.steps_per_epoch + 1) * self.steps_per_epoch]
        for every in (self.t.eval_every_steps, self.t.checkpoint_every_steps):
            if every:
                marks.append((step // every + 1) * every)
        return min(marks)


def drive(state, run_call, permute, cadence: Cadence, fused: int, n: int, batch_size: int,
          progress: StepProgress, ahead: Optional[int] = None, carried=None,
          stop: Optional[StopRequest] = None):
    """The host side of training, shared by `fit` and populations: fused device calls from
    `state.step` (per-member axis allowed) to the end, one epoch order per epoch.

    `run_call(k)(state, perm, offset)` runs k steps; `permute(data_rng, epoch, n)` draws an
    order. Yields `(state, step, losses, eval_due, checkpoint_due)` at every step where the
    host has work; `losses` holds the per-step losses since the last evaluation (a
    population's: steps × members), beginning with `carried`, those a resumed run's
    checkpoint kept (`Checkpointer.train_losses`). `ahead` bounds how many calls may wait
    behind the running one (see `parallel.calls_ahead`). Once `stop` is requested, the step
    reached by the running call is yielded as a checkpoint step, then `Interrupted` raised.
    """
    steps_per_epoch = cadence.steps_per_epoch
    step = int(to_host(state.step).reshape(-1)[0])
    perm, perm_epoch, pending = None, -1, []
    since_eval = [] if carried is None else [np.asarray(carried)]
    while step < cadence.total_steps:
        epoch = step // steps_per_epoch
        if epoch != perm_epoch:
            perm, perm_epoch = permute(state.data_rng, epoch, n), epoch
            if ahead is not None:
                # Ready before the steps read it: on XLA:CPU with several devices, steps queued
                # on an order still being computed can hang in their all-reduce
                # (`calls_ahead`). Elsewhere the next epoch is queued without waiting.
                perm = jax.block_until_ready(perm)
        k = min(fused, cadence.next_boundary(step) - step)
        offset = (step % steps_per_epoch) * batch_size
        state, metrics = run_call(k)(state, perm, np.int32(offset))
        pending.append(metrics["loss"])
        wait_behind(pending, ahead)
        step += k
        progress.advance(k, info=f"epoch {step / steps_per_epoch:.2f}")
        stopping = stop is not None and stop.requested
        if stopping:
            echo(f"Ctrl-C: saving a checkpoint at step {step} to stop there (Ctrl-C again "
                 "stops at once)")
        want_eval, want_ckpt = cadence.eval_due(step), cadence.checkpoint_due(step) or stopping
        if want_eval or want_ckpt:
            since_eval.append(to_host(jnp.concatenate(pending)))
            pending = []
            losses = np.concatenate(since_eval)
            yield state, step, losses, want_eval, want_ckpt
            since_eval = [] if want_eval else [losses]
        if stopping:
            raise Interrupted(step, step / steps_per_epoch)


def resolve_steps_per_call(trainer: TrainerConfig, platform: str, steps_per_epoch: int,
                           vmapped: bool = False, num_devices: int = 1) -> int:
    """`trainer.steps_per_call` as a number; `auto` per `default_steps_per_call`. A run on
    several devices all-reduces its gradients; a vmapped population's members do not talk."""
    fused = config_lib.steps_per_call(trainer)
    if fused == "auto":
        fused = default_steps_per_call(platform, steps_per_epoch,
                                       all_reduces=not vmapped and num_devices > 1)
    return steps_per_epoch if fused == "epoch" else fused


def check_monitor(monitor: str, data: DataSplits, fractions: tuple = (0.0, 0.0)) -> None:
    """Refuses, before training, a `trainer.monitor` that names no metric this run reports
    (a typo such as val/acc, or val/mse for a classifier): it used to be found only after the
    whole run had trained, when the sweeper asked for the value. So is data without a
    validation or test example, which leaves nothing to report (`fractions`: the config's
    val and test fractions, to say why)."""
    splits = [s for s in ("val", "test") if len(getattr(data, f"x_{s}"))]
    if not splits:  # it had trained, then failed on reading the monitored value (KeyError)
        val, test = fractions
        rows = len(data.x_train)
        why = ("data.val_fraction=0 and data.test_fraction=0 leave" if not val and not test else
               f"{rows} rows at data.val_fraction={val} and data.test_fraction={test} leave")
        raise UserError(f"{why} no validation or test example to evaluate the run on (its "
                        "final metrics, the value a sweep ranks); "
                        + ("keep one of them above 0" if not val and not test else
                           "add rows or raise a fraction"))
    if monitor == "auto":
        return
    known = [f"{split}/{name}" for split in splits for name in REPORTED[data.task]]
    if monitor not in known:
        raise UserError(f"trainer.monitor={monitor!r} is not a metric this {data.task} run "
                        f"reports; use auto or one of {', '.join(known)}")


def monitored(result: dict, monitor: str, task: str) -> dict:
    """result.json's `monitor`, the value a sweeper optimizes, and `monitored`, its name
    (`config.monitor_name`), which the pool launcher's summary table heads its metric column
    with (`check_monitor` refused a name the run does not report before it trained)."""
    name = config_lib.monitor_name(monitor, task, "val" in result)
    split, _, metric = name.partition("/")
    return {"monitor": float(result[split][metric]), "monitored": name}


# Settings that change how a run is shown or where its caches live, not what it computes.
_NOT_COMPARED = ("trainer.progress", "trainer.resume", "trainer.compilation_cache", "logger.")


def changes_since(earlier: dict, config: Config, task: str) -> dict:
    """`config_changes` from a run's earlier run.json (`_read_run`) to `config`; {} without
    one, as then there is nothing to compare. `data.normalize_target` changes nothing for a
    classifier (a run from before it existed would say `null -> true` on every resume)."""
    if "config" not in earlier:
        return {}
    changed = config_changes(earlier["config"], config_lib.to_dict(config))
    if task != "regression":
        changed.pop("data.normalize_target", None)
    return changed


def restore_naming_changes(ckpt: Checkpointer, target, step: Optional[int], changed: dict,
                           where: str, fix: str, total_steps: int):
    """`ckpt.restore(target, step)` (whose injected optimizer hyperparameters are the
    config's). When the checkpoint does not fit and settings changed since the run's
    last start, the one error names them (`where`: the run's folder, as the message says it;
    `fix`: what to do). A changed `seed` is refused: the checkpoints carry the old seed's
    data order and random draws, so the new one would change only the record. So is a
    changed optimizer setting when the checkpoint has trained all `total_steps`: nothing is
    left to train with it, and the results would stay the old setting's. And so is a config
    of fewer steps than the checkpoint has trained (a run is not shortened), and a change of
    the scale the parameters learned (`data.normalize`, or a regression's
    `data.normalize_target`, which `changes_since` names only for one): trained on, they
    would see inputs or targets on another scale."""
    rescaled = rescaled_data(changed)
    if rescaled:
        key, (was, now) = rescaled
        raise UserError(f"{where} was trained with {key}={json.dumps(was)}, and its parameters "
                        f"learned {'targets' if key.endswith('target') else 'inputs'} on that "
                        f"scale: resuming it with {key}={json.dumps(now)} would train them on "
                        f"another. {fix}")
    if "seed" in changed:
        was, now = changed["seed"]
        raise UserError(f"{where} was trained with seed={was}, and its checkpoints carry that "
                        f"seed's data order and random draws: resuming it with seed={now} "
                        f"would change only the record. {fix}")
    optim = {k: v for k, v in changed.items() if k.startswith("optim.")}
    at = ckpt.latest_step() if step is None else step
    if at is not None and at > total_steps:
        why = f" with {describe_changes(changed)}" if changed else ""
        raise UserError(f"{where} has trained {at} steps, more than the {total_steps} this "
                        f"config makes{why}: a run cannot be shortened, and its results would "
                        f"be those of {at} steps. {fix}")
    if optim and at is not None and at >= total_steps:
        raise UserError(f"{where} has trained all {total_steps} steps, so "
                        f"{describe_changes(optim)} would change none of them and its results "
                        "would stay the old setting's. Raise trainer.epochs to train on with "
                        f"the new setting. {fix}")
    try:
        return ckpt.restore(target, step)
    except CheckpointMismatch as e:  # a damaged checkpoint's own error says so instead
        if not changed:
            raise
        raise UserError(f"{where} last ran with other settings: {describe_changes(changed)}; "
                        f"its checkpoints do not fit this config. {fix}") from e


def rescaled_data(changed: dict) -> Optional[tuple]:
    """(key, [was, now]) for a changed standardization the checkpoints cannot take: of the
    inputs, or of a regression's targets. A run from before `data.normalize_target` existed
    trained on raw targets (was: None)."""
    for key in ("data.normalize", "data.normalize_target"):
        if key in changed:
            was, now = changed[key]
            if bool(was) != bool(now):
                return key, [bool(was), bool(now)]
    return None


def start_lines(header: str, run_dir: Path, start_step: int, changed: dict) -> list[str]:
    """What a run logs as it starts: its `run_header` (plus where it resumes and its run
    dir), then the settings changed since its last start, if any."""
    lines = [header + (f" | resuming at step {start_step}" if start_step else "")
             + f" | run dir {run_dir}"]
    if changed:
        lines.append(f"resuming {run_dir} at step {start_step} with settings changed since "
                     f"its last start: {describe_changes(changed)}")
    return lines


def resumes_with_changes(earlier: dict, step: int, changed: dict) -> dict:
    """run.json's `resumed_with_changes`: the earlier run.json's list plus this start's
    changes at `step` ({} when there has been none), so each change stays on record while
    the config becomes the new one."""
    resumes = earlier.get("resumed_with_changes", []) + (
        [{"step": step, "changed": changed}] if changed else [])
    return {"resumed_with_changes": resumes} if resumes else {}


def config_changes(before: dict, after: dict) -> dict:
    """{dotted field: [before, after]} for the fields whose values differ (nested config
    dicts as `config_lib.to_dict` writes them), leaving out display-only settings."""
    old, new = config_lib.flat_dict(before), config_lib.flat_dict(after)
    return {k: [old.get(k), new.get(k)] for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k) and not k.startswith(_NOT_COMPARED)}


def describe_changes(changed: dict) -> str:
    return ", ".join(f"{k} {json.dumps(a)} -> {json.dumps(b)}" for k, (a, b) in changed.items())


def _read_run(run_dir: Path) -> dict:
    """The run.json an earlier start of this run wrote ({} when there is none or it is
    unreadable: the checkpoints alone decide whether to resume)."""
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def make_run_dir(workdir) -> Path:
    """The run directory, created; a path that is a file (or under one), or that cannot be
    created, is one UserError naming it (fit(config, "data.csv") had raised
    FileExistsError)."""
    from lepton_jax.errors import as_path, os_reason

    run_dir = as_path(workdir, "the run directory")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        what = "is a file" if run_dir.is_file() else f"cannot be created ({os_reason(e, run_dir)})"
        raise UserError(f"run directory {run_dir} {what}; choose a folder for the run's files") \
            from None
    return run_dir


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=jsonable), encoding="utf-8")
    os.replace(tmp, path)


def divergence_hint(data: DataSplits) -> str:
    """What a divergence message adds when the data explains it: regression targets on a
    large scale (prices in the 100,000s), whose squared errors and gradients SGD from a
    small init overshoots at usual learning rates. Targets are standardized unless
    `data.normalize_target=false`, so this is said only then."""
    if data.task != "regression" or not len(data.y_train):
        return ""
    spread = float(np.std(data.y_train))
    if spread <= 100:
        return ""
    return (f"The regression targets are large (standard deviation {spread:.3g}) and "
            "data.normalize_target=false: set it to true (the default) to train on "
            f"standardized targets, or scale them down (e.g. divide them by "
            f"{10 ** int(np.log10(spread)):g}), or lower optim.lr by orders of magnitude.")


def chance_warning(result: dict, data: DataSplits, config: Config) -> Optional[str]:
    """A warning when a classifier's final parameters predict one class for every example of
    its validation split (the test split without one), or do no better there than always
    predicting the split's most common class would.

    Such a run ends without a NaN and without an error, at chance: a learning rate too high
    for its batch (LeNet-5 on digits at lr 0.05, batch 16; an MLP at lr 0.5, batch 8) kills
    the ReLUs and leaves the output layer's bias to decide, and one too low leaves the model
    untrained. Nothing else in the run's output said so."""
    split = next((s for s in ("val", "test") if s in result), None)
    if data.task != "classification" or split is None or data.num_classes < 2:
        return None
    confusion = np.asarray(result[split].get("confusion", []))
    if confusion.ndim != 2 or (confusion.sum(axis=1) > 0).sum() < 2:
        return None  # a split of one class (a tiny one) is all one class predicted right
    common = int(np.argmax(confusion.sum(axis=1)))
    baseline = confusion[common].sum() / confusion.sum()  # always predicting `common`
    accuracy = result[split]["accuracy"]
    predicted = np.flatnonzero(confusion.sum(axis=0))
    if len(predicted) > 1 and accuracy > baseline + 1e-9:
        return None

    def name(index: int):
        return repr(data.class_values[index] if data.class_values else index)

    what = (f"predicts class {name(predicted[0])} for all {int(confusion.sum()):,} {split} "
            f"examples ({split} accuracy {metric_value(accuracy)})" if len(predicted) == 1 else
            f"does no better than always predicting class {name(common)} would "
            f"({split} accuracy {metric_value(accuracy)} vs {metric_value(baseline)})")
    # Clipping rescued what a high rate collapsed: LeNet-5 on digits at lr 0.1 (momentum
    # 0.9, batch 64) ended at chance for 3 of 4 seeds, and with optim.clip_norm=1.0 trained
    # to 0.98-0.99 val accuracy for 6 of 6.
    clip = "" if config.optim.clip_norm else " (lower it, or cap each step with optim.clip_norm=1.0)"
    return (f"warning: the final model {what}. Check optim.lr (now "
            f"{short_value(config.optim.lr)}, batch {config.trainer.batch_size}): a rate too "
            f"high for the batch collapses training to one class{clip}, one too low (or too few "
            "epochs) leaves it untrained; or the inputs say little about the labels")


def data_info(data: DataSplits) -> dict:
    """What prediction needs to transform raw inputs the way training saw them."""
    return {"task": data.task, "num_classes": data.num_classes, "num_outputs": data.num_outputs,
            "input_shape": list(data.input_shape), "mean": data.mean, "std": data.std,
            "target_mean": data.target_mean, "target_std": data.target_std,
            "feature_names": list(data.feature_names), "class_values": list(data.class_values),
            "encoding": data.encoding, "pixels": data.pixels,
            "sizes": {"train": len(data.x_train), "val": len(data.x_val),
                      "test": len(data.x_test)}}


def wandb_writer(config: Config, run_dir: Path, alongside: bool = False) -> WandbWriter:
    """The run's wandb run (`logger=wandb`), named after its run dir."""
    return WandbWriter(run_dir, config.logger.wandb_project, config.logger.wandb_entity,
                       config.logger.wandb_mode, config_lib.to_dict(config), name=run_dir.name,
                       alongside=alongside)


def _make_writer(config: Config, run_dir: Path, keep_until_step: int):
    writers = [JsonlWriter(run_dir / "metrics.jsonl", keep_until_step=keep_until_step)]
    if config.logger.name in ("console", "wandb"):
        writers.append(LineWriter(echo))
    if config.logger.name == "wandb":
        writers.append(wandb_writer(config, run_dir))
    return MultiWriter(writers)


def fit(config: Config, workdir: str | os.PathLike, data: DataSplits | None = None) -> dict:
    """Trains `config` in `workdir`, resuming from its latest checkpoint if there is one.

    The same as `fit_with_state(...)[0]`; see there.
    """
    return fit_with_state(config, workdir, data)[0]


def fit_with_state(config: Config, workdir: str | os.PathLike,
                   data: DataSplits | None = None) -> tuple[dict, object]:
    """Trains `config` in `workdir`, resuming from its latest checkpoint if there is one.

    Args:
        config: the run's typed configuration.
        workdir: the run directory (checkpoints, metrics.jsonl, run.json, result.json).
        data: already loaded data (the notebook API); loaded from `config.data` when None.

    Returns:
        ({"val": {...}, "test": {...}, "monitor": float, "steps": int, ...}, final TrainState).

    Raises:
        UserError: for bad configs or inputs (before anything is written), DivergedError
            when the loss turns non-finite.
    """
    config_lib.require_config(config, "fit")
    config = config_lib.validate(config, data_given=data is not None)
    t = config.trainer
    started = time.perf_counter()
    enable_compilation_cache(t.compilation_cache)
    data = load_dataset(config.data) if data is None else data
    check_data(config.model, data.task, data.input_shape)
    check_monitor(t.monitor, data, (config.data.val_fraction, config.data.test_fraction))
    n = len(data.x_train)
    steps_per_epoch = n // t.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"trainer.batch_size ({t.batch_size}) is larger than the training set "
                        f"({n} examples); use a batch size <= {n}")
    total_steps = steps_per_epoch * t.epochs
    primary = initialize_processes() == 1 or jax.process_index() == 0
    devices = local_devices(t.num_devices)
    dp = DataParallel(resolve_strategy(t.parallel, len(devices)), devices, t.batch_size)
    fused = resolve_steps_per_call(t, devices[0].platform, steps_per_epoch,
                                   num_devices=dp.num_devices)

    model = build_model(config.model, data.num_outputs)
    tx = make_optimizer(config.optim, total_steps, steps_per_epoch)
    state = dp.replicate(create_state(model, tx, data.input_shape, config.seed))

    run_dir = make_run_dir(workdir)
    ckpt = Checkpointer(run_dir / "checkpoints", t.keep_checkpoints)
    earlier = _read_run(run_dir)
    changed: dict = {}
    if ckpt.latest_step() is not None:
        if not t.resume:
            raise UserError(f"run directory {run_dir} already holds checkpoints and "
                            "trainer.resume=false would overwrite them; choose a new run "
                            "directory or set trainer.resume=true")
        changed = changes_since(earlier, config, data.task)
        state = restore_naming_changes(
            ckpt, state, None, changed, f"run directory {run_dir}",
            "Resume with the run's own settings, or start a new run directory "
            "(hydra.run.dir=... on the command line, workdir= from Python)", total_steps)
    start_step = int(to_host(state.step))
    if primary:
        for line in start_lines(run_header(config, data, count_params(state.params),
                                           dp.num_devices, devices[0].platform, fused,
                                           steps_per_epoch), run_dir, start_step, changed):
            echo(line)
    # With several processes, process 0 writes the run's files; all take part in checkpoints.
    write_json = _write_json if primary else (lambda path, payload: None)
    write_json(run_dir / "run.json", {"config": config_lib.to_dict(config),
                                       "data": data_info(data),
                                       "strategy": dp.strategy, "devices": dp.num_devices,
                                       "steps_per_call": fused,
                                       **resumes_with_changes(earlier, start_step, changed)})

    writer = _make_writer(config, run_dir, keep_until_step=start_step) if primary \
        else MultiWriter([])
    progress = StepProgress(total_steps, start_step, t.progress)
    evaluate = Evaluator(model, data, t.eval_batch_size, dp.replicate,
                         compiler_options=dp.compiler_options)
    x_train, y_train = dp.replicate((data.x_train, data.y_train))
    permute = jax.jit(epoch_permutation, static_argnums=2, out_shardings=dp.replicated)

    def make_step(axis_name):
        return make_train_step(model, tx, data.task, axis_name)

    cadence = Cadence(t, steps_per_epoch, total_steps)

    def run_call(k):
        steps = dp.steps(make_step, k)
        return lambda state, perm, offset: steps(state, x_train, y_train, perm, offset)

    step = start_step
    # A resumed run's next train/loss also averages the steps before its checkpoint.
    carried = ckpt.train_losses(start_step) if start_step else None
    early = early_stop(t, data.task, evaluate.splits())
    if early is not None and start_step:  # a run that had stopped early stays stopped
        early.replay(evaluations(read_records(run_dir), start_step))
    best, best_params = resume_best(best_kept(t, data.task, evaluate.splits()), ckpt, start_step,
                                    run_dir if primary else None)
    stopped = False
    try:
        if start_step:
            writer.write_scalars(start_step, {"event": "resumed"})
        with stop_on_interrupt() as stop:
            # Each boundary hands back the newest (donated-into) state.
            boundaries = () if early is not None and early.due else \
                drive(state, run_call, permute, cadence, fused, n, t.batch_size, progress,
                      ahead=calls_ahead(devices), carried=carried, stop=stop)
            for state, step, losses, want_eval, want_ckpt in boundaries:
                bad = np.flatnonzero(~np.isfinite(losses))
                if bad.size:
                    at, loss = step - len(losses) + int(bad[0]) + 1, float(losses[bad[0]])
                    # Recorded as a population member's is, for reports of the run's sweep.
                    writer.write_scalars(at, {"event": "diverged", "loss": loss})
                    ckpt.wait()
                    raise DivergedError(at, loss, divergence_hint(data), ckpt.latest_step())
                if want_eval:
                    record = {"epoch": round(step / steps_per_epoch, 4),
                              "train/loss": float(losses.mean())}
                    if "val" in evaluate.splits():
                        record.update({f"val/{k_}": v for k_, v in
                                       evaluate(state.params, "val", step=step).items()})
                    writer.write_scalars(step, record)
                    if best is not None and best.update(step, record[best.metric]):
                        best_params = jax.tree.map(lambda a: np.array(to_host(a)), state.params)
                stopping = (want_eval and early is not None and step < total_steps
                            and early.update(step, record[early.metric]))
                if want_ckpt or stopping:
                    ckpt.save(state, train_losses=None if want_eval or not primary else losses,
                              best=best_payload(best, best_params) if primary else None)
                if stopping:
                    if primary:
                        echo(early_line(early, step, steps_per_epoch))
                    break
        result = {"steps": step, "epochs": t.epochs, "strategy": dp.strategy,
                  "devices": dp.num_devices, "resumed_from": start_step or None}
        if early is not None and early.due and step < total_steps:
            result["stopped_early"] = early.summary(step)
        final_params, final_step = state.params, step
        if best is not None and best.step is not None:
            result["best"] = best.summary()  # the parameters the final metrics describe
            if best.step != step:
                final_params, final_step = dp.replicate(best_params), best.step
        for split in evaluate.splits():
            result[split] = evaluate(final_params, split, with_confusion=True, step=final_step)
        result.update(monitored(result, t.monitor, data.task))
        result["seconds"] = round(time.perf_counter() - started, 3)
        writer.write_scalars(step, {f"final/{s}/{k_}": v for s in evaluate.splits()
                                    for k_, v in result[s].items() if k_ != "confusion"})
    except Interrupted:
        stopped = True
        raise
    finally:
        progress.close()
        writer.close()
        ckpt.close()
        if stopped and primary:
            echo(f"stopped at step {step} of {total_steps} (epoch {step / steps_per_epoch:.4g} "
                 f"of {t.epochs}), its checkpoint saved in {run_dir / 'checkpoints'}; training "
                 "into this run directory again resumes there")
    chance = chance_warning(result, data, config)
    if chance:  # kept for `report` and the pool's summary, which name such runs
        result["warnings"] = [chance]
    write_json(run_dir / "result.json", result)
    if primary:
        echo(summary_line(result, data.task, run_dir))
        if chance:
            echo(chance)
    return result, state.replace(params=final_params)


def resume_best(best: Optional[Best], ckpt: Checkpointer, start_step: int,
                run_dir: Optional[Path]) -> tuple[Optional[Best], Optional[dict]]:
    """`trainer.restore_best`'s tracker and best parameters (host arrays) as a run resuming
    at `start_step` left them in its checkpoint there. `run_dir`: where to say so when that
    checkpoint kept none (restore_best was off), then the best counts from here on."""
    if best is None or not start_step:
        return best, None
    kept = ckpt.best(start_step)
    if kept is None:
        if run_dir is not None:
            echo(f"trainer.restore_best: {run_dir} kept no best parameters before step "
                 f"{start_step}; the best is taken from its evaluations from here on")
        return best, None
    best.value, best.step = kept["value"], kept["step"]
    return best, kept["params"]


def best_payload(best: Optional[Best], params: Optional[dict]) -> Optional[dict]:
    """What `Checkpointer.save(best=...)` keeps of `trainer.restore_best`'s best so far."""
    if best is None:
        return None
    return {"step": best.step, "value": best.value, "params": params}


def run_header(config: Config, data: DataSplits, num_params: int, devices: int, platform: str,
               fused: int, steps_per_epoch: int, varying: tuple = ()) -> str:
    """One line saying what is about to train: model and size, data, optimizer, steps and
    devices. `varying`: a population's per-member fields, named instead of one value."""
    m, o, t = config.model, config.optim, config.trainer
    model = config_lib.model_label(m)
    target = target_label(data.task, data.num_classes, data.num_outputs)
    if data.task == "regression" and config.data.task == "auto" and len(data.y_train):
        # `auto` takes an integer target of more than MAX_AUTO_CLASSES values as numbers:
        # say so where a 30-class label would otherwise train as regression unremarked (up
        # to 100 values: integer prices are no labels). Standardized and back, they are
        # integers to float32 rounding.
        y = np.round(data.target_units(data.y_train), 3)
        values = np.unique(y)
        if len(values) <= 100 and np.array_equal(y, np.round(y)):
            target += (f" (data.task=auto: an integer target of {len(values)} values; "
                       "data.task=classification for classes)")
    elif data.task == "classification" and config.data.task == "auto" and \
            config.data.name == "csv" and len(data.class_values or ()) > 2 and \
            all(isinstance(v, numbers.Integral) for v in data.class_values):
        # And the other way: a rating of 1 to 5 trained as 5 unordered classes unremarked.
        target += (f" (data.task=auto: an integer target of {len(data.class_values)} values; "
                   "data.task=regression for a quantity)")
    sizes = " / ".join(f"{len(x):,} {name}" for name, x in
                       (("train", data.x_train), ("val", data.x_val), ("test", data.x_test))
                       if len(x))
    optim = [("optim.lr", f"lr {short_value(o.lr)}")]
    if o.momentum:
        optim.append(("optim.momentum",
                      f"momentum {short_value(o.momentum)}" + (" nesterov" if o.nesterov else "")))
    if o.weight_decay:
        optim.append(("optim.weight_decay", f"weight decay {short_value(o.weight_decay)}"))
    if o.clip_norm:
        optim.append(("optim.clip_norm", f"clip {short_value(o.clip_norm)}"))
    schedule = o.schedule
    if o.warmup_epochs and "optim.warmup_epochs" not in varying:
        schedule += (f" ({short_value(o.warmup_epochs)} warmup "
                     f"epoch{'s' if o.warmup_epochs != 1 else ''})")
    optim = ["sgd", *(text for field, text in optim if field not in varying), schedule]
    shape = inputs_label(data.input_shape)
    return (f"{model} ({num_params:,} params) | {config.data.name}: {sizes}, {shape} -> "
            f"{target} | {' '.join(optim)}"
            + (f" | members differ in {', '.join(varying)}" if varying else "")
            + f" | {t.epochs} epoch{'s' if t.epochs > 1 else ''} x {steps_per_epoch} "
            f"step{'s' * (steps_per_epoch != 1)} of {t.batch_size} ({fused} per call) on "
            f"{devices} {platform} device{'s' if devices > 1 else ''}"
            + _left_out(len(data.x_train), t.batch_size, devices))


def _left_out(n: int, batch: int, devices: int) -> str:
    """An epoch is whole batches: the header says so where the rest left out is a tenth of
    the training set or more (iris's 120 examples in batches of 64 trained on 64 per epoch),
    with the nearby batch size that uses them all."""
    left = n % batch
    if left < 0.1 * n:
        return ""
    fits = [b for b in range(max(devices, batch // 2), min(n, 2 * batch) + 1)
            if n % b == 0 and b % devices == 0]
    better = min(fits, key=lambda b: (abs(b - batch), b), default=None)
    return (f"; each epoch leaves out {left:,} of the {n:,} training examples (other ones each "
            "time)" + (f": a batch of {better} would use them all" if better else ""))


def summary_line(result: dict, task: str, run_dir: Path) -> str:
    name = "accuracy" if task == "classification" else "mse"
    parts = []
    for split in ("test", "val"):
        if split in result:
            parts.append(f"{split} {name} {metric_value(result[split][name])}")
    early = " (stopped early)" if "stopped_early" in result else ""
    if "best" in result and result["best"]["step"] != result["steps"]:
        parts.append(f"parameters of step {result['best']['step']} (best {result['best']['metric']})")
    return (f"done: {' | '.join(parts)} | {result['steps']} steps{early} in "
            f"{result['seconds']:.1f} s "
            f"on {result['devices']} device{'s' * (result['devices'] != 1)} | run dir {run_dir}")

