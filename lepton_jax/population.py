"""Population training: sweep points differing only in array-valued hyperparameters and seeds,
trained together as one vmapped JAX program; each member equals its standalone run."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lepton_jax import config as config_lib
from lepton_jax.checkpoint import Checkpointer
from lepton_jax.compile_cache import enable_compilation_cache
from lepton_jax.config import Config
from lepton_jax.data import load_dataset
from lepton_jax.errors import DivergedError, Interrupted, UserError
from lepton_jax.loop import (Cadence, Evaluator, _read_run, _write_json, best_payload,
                             changes_since, chance_warning, check_monitor, data_info,
                             describe_changes, divergence_hint, drive, make_run_dir, monitored,
                             resolve_steps_per_call, restore_naming_changes, resume_best,
                             resumes_with_changes, run_header, start_lines, summary_line,
                             wandb_writer)
from lepton_jax.models import build_model, check_data, count_params
from lepton_jax.optim import hyperparameters, make_optimizer, warmup_steps
from lepton_jax.parallel import DataParallel, local_devices
from lepton_jax.progress import StepProgress
from lepton_jax.stopping import best_kept, early_line, early_stop, evaluations, stop_on_interrupt
from lepton_jax.state import create_state
from lepton_jax.step import epoch_permutation, make_train_step
from lepton_jax.writers import (JsonlWriter, LineWriter, MultiWriter, diverged_at, echo,
                                read_records, short_value)

# Fields that enter the step as arrays (optimizer hyperparameters injected into the optimizer
# state, and the seed behind init, step rng and data order); every other field is structural.
VECTORIZABLE = ("optim.lr", "optim.momentum", "optim.weight_decay", "optim.warmup_epochs",
                "seed")
# Fields that change nothing a member computes (where and how it reports).
_NEUTRAL = ("trainer.progress", "logger.name", "logger.wandb_project", "logger.wandb_entity",
            "logger.wandb_mode")


def _flat(config: Config) -> dict:
    return config_lib.flat_dict(config_lib.to_dict(config))


def structural_key(config: Config) -> tuple:
    """Configs with equal keys can train as one population."""
    flat = _flat(config)
    return tuple((k, repr(v)) for k, v in sorted(flat.items())
                 if k not in VECTORIZABLE and k not in _NEUTRAL)


def check_population(configs: Sequence[Config]) -> None:
    """Raises UserError naming the first field that differs and would change shapes/programs."""
    first = _flat(configs[0])
    for other in configs[1:]:
        for key, value in _flat(other).items():
            if key in VECTORIZABLE or key in _NEUTRAL or first[key] == value:
                continue
            raise UserError(f"cannot vectorize over {key} ({first[key]!r} vs {value!r}): it "
                            "changes the program (shapes, schedule or data), not just array "
                            f"values; vectorizable fields: {', '.join(VECTORIZABLE)}")


def population_mode(config: Config, platform: str) -> str:
    """vmap everywhere except convolutions on XLA:CPU: there a vmapped LeNet-5 member's
    step took twice its standalone step (8 members on one core: 24.7-27.4 vs 12.5 ms; the
    batched convolutions run as slow grouped ones), so members call the standalone program
    one after another from the host ("host", on one device: CPU devices share the cores)."""
    return "host" if platform == "cpu" and config.model.name == "lenet5" else "vmap"


def member_bytes(model, input_shape: tuple, batch_size: int) -> int:
    """Estimated device memory one member needs while training: parameters four times over
    (params, momentum, gradients, update) plus every layer's activations twice (forward
    values kept for the backward pass, and their gradients). Shapes only; nothing runs."""
    x = jax.ShapeDtypeStruct((batch_size, *input_shape), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    _, captured = jax.eval_shape(
        lambda v, x: model.apply(v, x, capture_intermediates=True, mutable=["intermediates"]),
        variables, x)
    size = lambda tree: sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree))  # noqa: E731
    return 4 * size(variables) + 2 * size(captured)


def device_memory(device) -> int:
    """Free bytes on `device` (the accelerator's allocator limit, or host RAM on CPU)."""
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    import psutil

    return int(psutil.virtual_memory().available)


def _memory_cap(model, input_shape: tuple, batch_size: int, devices: list) -> tuple[int, int, int]:
    """(members that fit, bytes per member, free bytes): half the free memory of the devices
    is left to the dataset, evaluation and XLA's temporaries."""
    per_member = member_bytes(model, input_shape, batch_size)
    free = min(device_memory(d) for d in devices)
    return max(1, free // 2 // per_member) * len(devices), per_member, free


def fit_population(configs: Sequence[Config], workdirs: Sequence[str | os.PathLike],
                   logs: Optional[Sequence[Callable[[str], None]]] = None,
                   _fits_memory: bool = False) -> list[dict]:
    """Trains `configs` (one population) as one vmapped program; member i writes `workdirs[i]`
    exactly as `fit` would (run.json, metrics.jsonl, checkpoints, result.json).

    `logs`: per member, where its own console lines go (a Hydra job's `train.log`,
    `writers.JobLog`): what its standalone run would print (header, evaluations, final
    metrics, done line), while the console gets the population's lines.

    A population larger than the devices' memory allows (estimated from shapes) trains in
    chunks, one after another; members are independent, so the results are the same.

    Returns:
        One result dict per member; a diverged member has {"status": "diverged", "step": s},
        and a member whose config is refused {"status": "failed", "error": UserError}: as
        separate jobs would, it fails alone and the others train.
    """
    if not configs:
        return []
    checked = _each_checked(configs, config_lib.validate)
    if any(isinstance(c, UserError) for c in checked):
        return _without_refused(checked, workdirs, logs, _fits_memory)
    configs = checked
    check_population(configs)
    base, t = configs[0], configs[0].trainer
    enable_compilation_cache(t.compilation_cache)
    started = time.perf_counter()
    data = load_dataset(base.data)
    check_data(base.model, data.task, data.input_shape)
    check_monitor(t.monitor, data,  # a structural field: the members share it
                  (configs[0].data.val_fraction, configs[0].data.test_fraction))
    n, members = len(data.x_train), len(configs)
    steps_per_epoch = n // t.batch_size
    if steps_per_epoch == 0:
        raise UserError(f"trainer.batch_size ({t.batch_size}) is larger than the training set "
                        f"({n} examples)")
    total_steps = steps_per_epoch * t.epochs
    # A warm-up that rounds to all of training's steps is refused once the steps are known.
    def warmup_fits(config: Config) -> Config:
        warmup_steps(config.optim, total_steps, steps_per_epoch)
        return config

    warmed = _each_checked(configs, warmup_fits)
    if any(isinstance(c, UserError) for c in warmed):
        return _without_refused(warmed, workdirs, logs, _fits_memory)
    # The population axis is the parallelism: members split over as many local devices as
    # divide their number evenly (trainer.num_devices caps them).
    devices = local_devices(t.num_devices)
    platform = devices[0].platform
    mode = population_mode(base, platform)
    used = 1 if mode == "host" else max(d for d in range(1, len(devices) + 1) if members % d == 0)
    dp = DataParallel("population", devices[:used], t.batch_size)
    fused = resolve_steps_per_call(t, platform, steps_per_epoch, vmapped=mode == "vmap")
    model = build_model(base.model, data.num_outputs)
    if not _fits_memory:
        cap, per_member, free = _memory_cap(model, data.input_shape, t.batch_size, devices[:used])
        if members > cap:
            print(f"population of {members} trains in chunks of {cap}: ~{per_member / 2**20:.1f} "
                  f"MiB per member, {free / 2**20:.0f} MiB free", flush=True)
            return [result for i in range(0, members, cap)
                    for result in fit_population(configs[i:i + cap], workdirs[i:i + cap],
                                                 logs and logs[i:i + cap], True)]
    tx = make_optimizer(base.optim, total_steps, steps_per_epoch)

    def member_state(config: Config):
        state = create_state(model, tx, data.input_shape, config.seed)
        hyper = {**state.opt_state.hyperparams}
        for name, value in hyperparameters(config.optim, total_steps, steps_per_epoch).items():
            hyper[name] = jnp.asarray(value, hyper[name].dtype)
        return state.replace(opt_state=state.opt_state._replace(hyperparams=hyper))

    singles = [member_state(c) for c in configs]
    dirs = [make_run_dir(d) for d in workdirs]
    ckpts = []
    for d in dirs:
        ckpts.append(Checkpointer(d / "checkpoints", t.keep_checkpoints, asynchronous=True))
    evaluate = Evaluator(model, data, t.eval_batch_size, dp.replicate, population=mode,
                         compiler_options=dp.compiler_options)
    early = [early_stop(c.trainer, data.task, evaluate.splits()) for c in configs]
    saved = [set(c.all_steps()) for c in ckpts]
    if not t.resume and any(saved):
        held = dirs[next(i for i in range(members) if saved[i])]
        raise UserError(f"job directory {held} already holds checkpoints and trainer.resume="
                        "false would overwrite them; choose a new sweep directory or set "
                        "trainer.resume=true")
    # On resume each member's records say whether it had stopped early (the rule replays
    # them up to its newest checkpoint) or diverged; such a member stays so, at its own
    # step (a diverged one may have no checkpoint at all), and the others resume together.
    history = [read_records(d) if any(saved) else [] for d in dirs]
    for i in range(members):
        if early[i] is not None and saved[i] and max(saved[i]) < total_steps:
            early[i].replay(evaluations(history[i], max(saved[i])))
    halted_at = {i: max(saved[i]) for i in range(members) if early[i] is not None and early[i].due}
    diverged_before = {i: at for i in range(members) if (at := diverged_at(history[i]))}
    training = [i for i in range(members) if i not in halted_at and i not in diverged_before]
    if any(saved[i] for i in training):
        # From the newest step all of them saved (a run stopped while saving, or a member
        # that diverged, leaves some members a checkpoint ahead).
        common = set.intersection(*(saved[i] for i in training))
        if not common:  # e.g. a sweep extended with new points: those have no checkpoint yet
            for c in ckpts:
                c.close()
            return _by_newest_step(configs, workdirs, logs, saved, training, _fits_memory)
        step = max(common)
    else:  # the others start afresh (or every member had stopped)
        step = 0 if training else max(halted_at.values())
    # As `fit` does: settings changed since a member's last start are named, and kept in
    # its run.json; checkpoints they no longer fit are one error naming them.
    earlier = [_read_run(d) if saved[i] else {} for i, d in enumerate(dirs)]
    changes = [changes_since(e, c, data.task) for e, c in zip(earlier, configs, strict=True)]
    resumed: list = list(singles)
    for i in range(members):
        if saved[i] and i not in diverged_before:
            try:
                resumed[i] = restore_naming_changes(
                    ckpts[i], dp.replicate(singles[i]), halted_at.get(i, step), changes[i],
                    f"job directory {dirs[i]}",
                    "Resume with the sweep's own settings, or start a new sweep directory",
                    total_steps)
            except UserError as e:
                resumed[i] = e
    if any(isinstance(r, UserError) for r in resumed):  # such a member fails alone
        for c in ckpts:
            c.close()
        return _without_refused([r if isinstance(r, UserError) else c
                                 for r, c in zip(resumed, configs, strict=True)],
                                workdirs, logs, _fits_memory)
    singles = resumed
    for i in [*halted_at, *diverged_before]:  # masked rows: only the step counter must match
        singles[i] = singles[i].replace(step=jnp.asarray(step, singles[i].step.dtype))
    # trainer.restore_best: each member's best evaluation so far and its parameters (host).
    keeps = [best_kept(c.trainer, data.task, evaluate.splits()) for c in configs]
    best_rows: list = [None] * members
    for i in range(members):
        if saved[i] and i not in diverged_before:
            keeps[i], best_rows[i] = resume_best(keeps[i], ckpts[i], halted_at.get(i, step),
                                                 dirs[i])
    states = dp.shard_members(jax.tree.map(lambda *xs: jnp.stack(xs), *singles))
    start_step = int(states.step[0])
    # Each member's history: a stopped member keeps its records up to its own stop.
    kept_until = [halted_at.get(i, diverged_before.get(i, (start_step,))[0])
                  for i in range(members)]
    num_params = count_params(singles[0].params)  # one model: the same for every member
    echo(f"population of {members}: "
         + run_header(base, data, num_params, used, platform, fused, steps_per_epoch,
                      _varying(configs))
         + (f" | resuming at step {start_step}" if start_step else ""))
    names = _member_names(configs, dirs)
    changed_members: dict[str, list[str]] = {}
    for i in range(members):
        if changes[i]:
            changed_members.setdefault(describe_changes(changes[i]), []).append(names[i])
    for described, who in changed_members.items():
        echo(f"resuming {'every member' if len(who) == members else 'job ' + ', '.join(who)} "
             f"at step {start_step} with settings changed since its last start: {described}")
    tell = logs or [lambda line: None] * members  # each member's own log
    for i in range(members):
        header = run_header(configs[i], data, num_params, used, platform, fused,
                            steps_per_epoch) + f" | in a population of {members}"
        for line in start_lines(header, dirs[i], start_step, changes[i]):
            tell[i](line)
    for i, (config, d) in enumerate(zip(configs, dirs, strict=True)):
        _write_json(d / "run.json", {"config": config_lib.to_dict(config), "data": data_info(data),
                                     "strategy": "population", "devices": used,
                                     "population": members, "steps_per_call": fused,
                                     **resumes_with_changes(earlier[i], halted_at.get(i, start_step),
                                                            changes[i])})
    writers = [JsonlWriter(d / "metrics.jsonl", keep_until_step=kept_until[i])
               for i, d in enumerate(dirs)]
    if logs:
        writers = [MultiWriter([w, LineWriter(log)]) for w, log in zip(writers, logs, strict=True)]
    # logger=wandb: a wandb run per member, as its standalone run has, all logging at once.
    writers = [MultiWriter([w, wandb_writer(configs[i], dirs[i], alongside=True)])
               if configs[i].logger.name == "wandb" else w for i, w in enumerate(writers)]
    x_train, y_train = dp.replicate((data.x_train, data.y_train))
    permute = jax.jit(jax.vmap(epoch_permutation, in_axes=(0, None, None)), static_argnums=2)
    cadence = Cadence(t, steps_per_epoch, total_steps)
    progress = StepProgress(total_steps, start_step, t.progress, f"population of {members}")

    def make_step(axis_name):
        return make_train_step(model, tx, data.task, axis_name)

    def run_call(k):
        steps = dp.population_steps(make_step, k, mode)
        return lambda states, perms, offset: steps(states, x_train, y_train, perms, offset)

    diverged: dict[int, tuple[int, float]] = dict(diverged_before)
    # Early stopping per member: one that stops keeps its results of that step and is masked
    # from then on, as a diverged one is; when none is left training, the program stops.
    halted: dict[int, tuple[int, dict]] = {}  # member -> (step, its final metrics there)
    for i in training:  # from the step they resume at (a stopped one was replayed above)
        if early[i] is not None:
            early[i] = early_stop(configs[i].trainer, data.task, evaluate.splits()).replay(
                evaluations(history[i], start_step))

    def best_of(params, who: list[int], step: int):
        """`params` with the rows of the members `who` replaced by their best evaluation's
        (`trainer.restore_best`), and the step they all belong to (None once one is replaced,
        so that they are predicted afresh)."""
        rows = {i: best_rows[i] for i in who
                if keeps[i] is not None and keeps[i].step not in (None, halted_at.get(i, step))}
        if not rows:
            return params, step
        host = jax.tree.map(np.array, jax.device_get(params))
        for i, row in rows.items():
            for leaf, value in zip(jax.tree.leaves(host), jax.tree.leaves(row), strict=True):
                leaf[i] = value
        return dp.shard_members(host), None

    def halt(members_now: list[int], step: int) -> None:
        params, at = best_of(states.params, members_now, step)
        now = {s: evaluate(params, s, with_confusion=True, step=at) for s in evaluate.splits()}
        for i in members_now:
            at = halted_at.get(i, step)
            halted[i] = (at, {s: now[s][i] for s in now})
            line = early_line(early[i], at, steps_per_epoch)
            echo(f"job {names[i]}: {line}; masked")
            tell[i](line)

    step = start_step
    clock = _Stopwatch(started)
    clock.lap("setup")
    stopped = False
    try:
        if halted_at:  # they had stopped before
            halt(sorted(halted_at), start_step)
        with stop_on_interrupt() as stop:
            # Each boundary hands back the newest (donated-into) state.
            boundaries = () if len(halted) == members else \
                drive(states, run_call, permute, cadence, fused, n, t.batch_size, progress,
                      carried=_carried_losses(ckpts, start_step, {*halted_at, *diverged_before}),
                      stop=stop)
            for states, step, losses, want_eval, want_ckpt in boundaries:
                clock.lap("training")
                for i in range(members):
                    bad = np.flatnonzero(~np.isfinite(losses[:, i]))
                    if bad.size and i not in diverged and i not in halted:
                        diverged[i] = (step - len(losses) + int(bad[0]) + 1,
                                       float(losses[bad[0], i]))
                        echo(f"job {names[i]} diverged at step {diverged[i][0]} "
                             f"(loss={diverged[i][1]}); masked, the other members go on")
                        writers[i].write_scalars(diverged[i][0], {"event": "diverged",
                                                                  "loss": diverged[i][1]})
                live = [i for i in range(members) if i not in diverged and i not in halted]
                stopping, improved = [], []
                if want_eval and live:
                    val = (evaluate(states.params, "val", step=step)
                           if "val" in evaluate.splits() else None)
                    echo(_eval_line(step, step / steps_per_epoch, losses, val, live, names,
                                    members, data.task))
                    for i in live:
                        record = {"epoch": round(step / steps_per_epoch, 4),
                                  "train/loss": float(losses[:, i].mean())}
                        if val is not None:
                            record.update({f"val/{key}": v for key, v in val[i].items()})
                        writers[i].write_scalars(step, record)
                        if keeps[i] is not None and keeps[i].update(step, record[keeps[i].metric]):
                            improved.append(i)
                        if (early[i] is not None and step < total_steps
                                and early[i].update(step, record[early[i].metric])):
                            stopping.append(i)
                    if improved:
                        params_now = jax.device_get(states.params)
                        for i in improved:
                            best_rows[i] = jax.tree.map(lambda a, i=i: np.array(a[i]), params_now)
                    if stopping:
                        halt(stopping, step)
                clock.lap("evaluation")
                if want_ckpt or stopping:
                    members_now = jax.device_get(states)  # one transfer, then slice on host
                    saving = live if want_ckpt else stopping
                    for i in saving:
                        ckpts[i].save(jax.tree.map(lambda a, i=i: a[i], members_now),
                                      wait=False, train_losses=None if want_eval else losses[:, i],
                                      best=best_payload(keeps[i], best_rows[i]))
                    for i in saving:
                        ckpts[i].wait()
                clock.lap("checkpoints")
                if len(diverged) + len(halted) == members:
                    break  # nothing left to train
        results = []
        live = [i for i in range(members) if i not in diverged and i not in halted]
        params, at = best_of(states.params, live, step)
        finals = {s: evaluate(params, s, with_confusion=True, step=at)
                  for s in evaluate.splits()} if live else {}
        clock.lap("evaluation")
        seconds = round(time.perf_counter() - started, 3)
        for i in range(members):
            if i in diverged:
                at, loss = diverged[i]
                hint = divergence_hint(data)  # the error says what a standalone run's says
                result = {"status": "diverged", "step": at, "loss": loss, "hint": hint,
                          "error": str(DivergedError(at, loss, hint, ckpts[i].latest_step()))}
            else:
                at, metrics = halted.get(i, (step, {s: finals[s][i] for s in finals}))
                result = {"status": "done", "steps": at, "epochs": t.epochs,
                          "strategy": "population", "devices": used, "population": members,
                          "resumed_from": start_step or None, "seconds": seconds,
                          "timing": clock.rounded(), **metrics}
                if i in halted:
                    result["stopped_early"] = early[i].summary(at)
                if keeps[i] is not None and keeps[i].step is not None:
                    result["best"] = keeps[i].summary()  # the parameters the metrics describe
                result.update(monitored(result, t.monitor, data.task))
                writers[i].write_scalars(at, {f"final/{s}/{key}": v for s in metrics
                                              for key, v in metrics[s].items()
                                              if key != "confusion"})
                chance = chance_warning(result, data, configs[i])
                if chance:
                    result["warnings"] = [chance]
            _write_json(dirs[i] / "result.json", result)
            if result["status"] == "done":
                tell[i](summary_line(result, data.task, dirs[i]))
                for warning in result.get("warnings", ()):  # as a diverged member is: said
                    echo(f"job {names[i]}: {warning}")    # here, and in its own log
                    tell[i](warning)
            results.append(result)
    except Interrupted:
        stopped = True
        raise
    finally:
        progress.close()
        for w in writers:
            w.close()
        for c in ckpts:
            c.close()
        if stopped:
            echo(f"stopped at step {step} of {total_steps}, every live member's checkpoint "
                 "saved there; training the population into the same job dirs again resumes "
                 "there")
    done = sum(r["status"] == "done" for r in results)
    early_stops = f", {len(halted)} stopped early" if halted else ""
    echo(f"done: population of {members} ({done} finished{early_stops}, {len(diverged)} "
         f"diverged), "
         f"{step} steps in {seconds:.1f} s ({clock.summary()})")
    return results


def _each_checked(configs: Sequence[Config], check: Callable[[Config], Config]) -> list:
    """Per member, `check(config)` (the config to train), or the UserError it raised."""
    checked: list = []
    for config in configs:
        try:
            checked.append(check(config))
        except UserError as e:
            checked.append(e)
    return checked


def _without_refused(checked: Sequence, workdirs: Sequence, logs: Optional[Sequence],
                     fits_memory: bool) -> list[dict]:
    """`fit_population` of the members whose entry in `checked` is a config; the others (a
    UserError each) fail alone with their own error, as separate jobs would."""
    valid = [i for i, c in enumerate(checked) if not isinstance(c, UserError)]
    trained = dict(zip(valid, fit_population(
        [checked[i] for i in valid], [workdirs[i] for i in valid],
        logs and [logs[i] for i in valid], fits_memory), strict=True))
    return [trained.get(i) or {"status": "failed", "error": checked[i]}
            for i in range(len(checked))]


def _by_newest_step(configs: Sequence[Config], workdirs: Sequence, logs: Optional[Sequence],
                    saved: Sequence[set], training: Sequence[int], fits_memory: bool) -> list[dict]:
    """`fit_population` of members whose checkpoints share no step (a sweep extended with
    new points into its sweep dir: those have none yet), as one population per newest step,
    one after another: each member resumes where its standalone run would. Members that
    stopped early or diverged only keep their results; they join the first group."""
    groups: dict[int, list[int]] = {}
    for i in training:
        groups.setdefault(max(saved[i], default=0), []).append(i)
    next(iter(groups.values())).extend(i for i in range(len(configs)) if i not in training)
    results: list = [None] * len(configs)
    for who in groups.values():
        trained = fit_population([configs[i] for i in who], [workdirs[i] for i in who],
                                 logs and [logs[i] for i in who], fits_memory)
        for i, result in zip(who, trained, strict=True):
            results[i] = result
    return results


def _carried_losses(ckpts: Sequence[Checkpointer], step: int, masked=()):
    """The members' losses since their last evaluation, kept with their checkpoints at
    `step` (steps × members), or None when any member's are missing; `masked` members (those
    that stopped early or diverged) count zeros."""
    kept = [None if i in masked else c.train_losses(step) for i, c in enumerate(ckpts)] \
        if step else [None]
    known = [k for k in kept if k is not None]
    if len(known) < len(kept) - len(masked) or len({len(k) for k in known}) != 1:
        return None
    return np.stack([np.zeros_like(known[0]) if k is None else k for k in kept], axis=1)


class _Stopwatch:
    """Wall time per phase of a population's run (its done line and result.json): setup
    (data, states, checkpoint managers), training (device calls, the first one compiling),
    evaluation and checkpoints, so a slow sweep says where its time went."""

    def __init__(self, start: float):
        self.totals: dict[str, float] = {}
        self._last = start

    def lap(self, phase: str) -> None:
        """Adds the time since the previous lap to `phase`."""
        now = time.perf_counter()
        self.totals[phase] = self.totals.get(phase, 0.0) + now - self._last
        self._last = now

    def rounded(self) -> dict[str, float]:
        return {phase: round(seconds, 3) for phase, seconds in self.totals.items()}

    def summary(self) -> str:
        return ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in self.totals.items())


def _varying(configs: Sequence[Config]) -> tuple[str, ...]:
    """The vectorizable fields whose values differ between the members."""
    flats = [_flat(c) for c in configs]
    return tuple(k for k in VECTORIZABLE if len({repr(f[k]) for f in flats}) > 1)


def _member_names(configs: Sequence[Config], dirs: Sequence[Path]) -> list[str]:
    """'<job dir name> (<the vectorized values that differ>)', e.g. '6 (optim.lr=0.2 seed=0)';
    numbers to 6 digits, as the report prints them (a geomspace lr reads 0.0316228)."""
    flats, varying = [_flat(c) for c in configs], _varying(configs)
    return [f"{d.name} ({' '.join(f'{k}={short_value(f[k])}' for k in varying)})"
            if varying else d.name
            for d, f in zip(dirs, flats, strict=True)]


def _eval_line(step: int, epoch: float, losses: np.ndarray, val: list | None, live: list[int],
               names: list[str], members: int, task: str) -> str:
    """One console line per evaluation of the population: the live members'
    median train loss and their best, median and worst validation score (each member's
    metrics.jsonl has its own)."""
    parts = [f"step {step}", f"epoch {epoch:.4g}", f"{len(live)}/{members} members live",
             f"train/loss median {float(np.median(losses[:, live].mean(axis=0))):.4g}"]
    if val is not None:
        key = "accuracy" if task == "classification" else "mse"
        scores = np.array([val[i][key] for i in live])
        order = np.argsort(-scores if key == "accuracy" else scores, kind="stable")
        parts.append(f"val/{key} best {scores[order[0]]:.4g} by job {names[live[order[0]]]}, "
                     f"median {float(np.median(scores)):.4g}, worst {scores[order[-1]]:.4g}")
    return " | ".join(parts)


def group_population(configs: Sequence[Config], max_population: int = 0) -> list[list[int]]:
    """Indices of `configs` grouped by structural fields (order kept), split to
    `max_population` members at most (0: no limit)."""
    groups: dict[tuple, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(structural_key(config), []).append(i)
    out = []
    for members in groups.values():
        size = max_population or len(members)
        out.extend(members[j:j + size] for j in range(0, len(members), size))
    return out

