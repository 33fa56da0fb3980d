"""One job (or one population of jobs) run inside a pool worker or a Ray task."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, env_override, run_job, setup_globals
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from hydra_plugins.lepton_pool._compose import SweepComposer


@dataclass
class JobContext:
    """What every job of a sweep shares; sent once to each worker."""

    hydra_context: HydraContext
    config: DictConfig
    task_function: TaskFunction
    singleton_state: Any
    cwd: str
    sys_path: list


@dataclass
class Outcome:
    """A job's JobReturn, plus what the launcher shows and records about it."""

    num: int
    ret: JobReturn
    job_dir: str
    error: str = ""  # the job's traceback when it raised
    status: str = ""  # set by the launcher for jobs it gave up on (FAILED, CANCELLED, ...)
    fault: str = ""  # an infrastructure fault inside the job (out of memory): retried


class JobFailed(Exception):
    """Stands in for an exception that could not travel back from the worker."""


def out_of_memory(error: BaseException) -> bool:
    """Host or accelerator memory ran out: an infrastructure fault, retried like a kill."""
    text = str(error)
    return isinstance(error, MemoryError) or "RESOURCE_EXHAUSTED" in text \
        or "Out of memory" in text


def enter(ctx: JobContext) -> None:
    """Makes this process look like the launcher's to Hydra and to the task."""
    for entry in reversed(ctx.sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    setup_globals()
    Singleton.set_state(ctx.singleton_state)
    os.chdir(ctx.cwd)


class RememberingLoader:
    """Hydra's config loader, remembering the job configs a sweeper composes to validate a
    batch (Hydra's sweepers compose every job once before launching it; launchers then
    compose it again), so that the launcher can send each job the config already composed.
    Job configs come from a `SweepComposer`; everything else is the wrapped loader's."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.composer = SweepComposer(loader)
        self.composed: dict[tuple, tuple[DictConfig, DictConfig]] = {}

    def __getattr__(self, name: str) -> Any:
        if name in ("loader", "composer", "composed"):  # not set yet (copying, unpickling)
            raise AttributeError(name)
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig,
                          sweep_overrides: list[str]) -> DictConfig:
        config = self.composer.load_sweep_config(master_config, sweep_overrides)
        self.composed[tuple(sweep_overrides)] = (master_config, config)
        return config

    def take(self, master_config: DictConfig, overrides: Sequence[str]) -> Optional[DictConfig]:
        """The config composed for these overrides of this sweep config, once; else None."""
        master, config = self.composed.pop(tuple(overrides), (None, None))
        return config if master is master_config else None


def remembering(hydra_context: HydraContext) -> RememberingLoader:
    """Puts a RememberingLoader into the context a sweeper and its launcher share."""
    if not isinstance(hydra_context.config_loader, RememberingLoader):
        hydra_context.config_loader = RememberingLoader(hydra_context.config_loader)
    return hydra_context.config_loader


def job_config(ctx: JobContext, num: int, overrides: Sequence[str],
               config: Optional[DictConfig] = None) -> DictConfig:
    if config is None:
        config = ctx.hydra_context.config_loader.load_sweep_config(ctx.config, list(overrides))
    with open_dict(config):
        config.hydra.job.id = f"{config.hydra.job.name}_{num}"
        config.hydra.job.num = num
    return config


def job_dir(config: DictConfig) -> Path:
    return Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)


@contextlib.contextmanager
def captured_output(directory: Path) -> Iterator[None]:
    """Sends file descriptors 1 and 2 (Python's and native code's output) to the job dir."""
    directory.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(directory / "stdout.log", "ab") as out, open(directory / "stderr.log", "ab") as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _hydra_job(ctx: JobContext, num: int, overrides: Sequence[str], task_function: Any,
               config: Optional[DictConfig] = None) -> tuple[JobReturn, Path, str]:
    """Runs `task_function` as Hydra's own launchers do (`run_job`), with the job's output
    captured in its job dir; returns the JobReturn, the job dir and the traceback if it failed.
    `config` is the job's composed config when the launcher has it (else composed here)."""
    config = job_config(ctx, num, overrides, config)
    if "${hydra:" in str(OmegaConf.to_container(config.hydra.sweep).get("subdir", "")):
        HydraConfig.instance().set_config(config)  # run_job sets it too; needed earlier here
    directory = job_dir(config)
    with captured_output(directory):
        try:
            ret = run_job(hydra_context=ctx.hydra_context, config=config,
                          task_function=task_function, job_dir_key="hydra.sweep.dir",
                          job_subdir_key="hydra.sweep.subdir")
        except SystemExit as e:  # sys.exit in user code fails the job, not the worker
            ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED,
                            _return_value=JobFailed(f"the job called sys.exit({e.code})"))
        error = ""
        if ret.status == JobStatus.FAILED:
            error = "".join(traceback.format_exception(ret._return_value))
            print(error, file=sys.stderr, flush=True)
    return ret, directory, error


def run_one(ctx: JobContext, num: int, overrides: Sequence[str],
            config: Optional[DictConfig] = None) -> Outcome:
    """Runs the sweep's task function for one job."""
    ret, directory, error = _hydra_job(ctx, num, overrides, ctx.task_function, config)
    fault = ""
    if ret.status == JobStatus.FAILED and out_of_memory(ret._return_value):
        fault = f"out of memory ({type(ret._return_value).__name__})"
    return Outcome(num, portable(ret, error), str(directory), error, fault=fault)


def portable(ret: JobReturn, error: str) -> JobReturn:
    """A JobReturn that pickles: an exception that does not is replaced by its text."""
    try:
        pickle.loads(pickle.dumps(ret._return_value))
    except Exception:
        ret._return_value = (JobFailed(error.strip() or repr(ret._return_value))
                             if ret.status == JobStatus.FAILED else repr(ret._return_value))
    return ret


def run_population(ctx: JobContext,
                   jobs: Sequence[tuple[int, Sequence[str], Optional[DictConfig]]]) -> list[Outcome]:
    """Trains lepton_jax jobs that differ only in vectorizable fields as one population.

    Each member's job dir is set up by Hydra's own `run_job` (config snapshot, logging,
    chdir rules) with a task that only records the member's config and its log files; then
    all members train together, each member's `train.log` getting the lines its standalone
    run would log, and each JobReturn gets its member's metric or failure.
    """
    from lepton_jax.config import Config
    from lepton_jax.errors import DivergedError, UserError
    from lepton_jax.hydra_app import to_config
    from lepton_jax.population import fit_population
    from lepton_jax.writers import JobLog

    members, outcomes = [], []  # per member: what its task saw (config, output dir)
    # Hydra's job callbacks hear of a member when its training has ended, not when its job
    # dir is set up (run_job calls them around the config-recording task).
    held = _HeldJobCallbacks()
    setup = dataclasses.replace(ctx, hydra_context=HydraContext(
        config_loader=ctx.hydra_context.config_loader, callbacks=held))
    for num, overrides, config in jobs:
        seen: dict = {}

        def record(cfg: DictConfig, seen=seen) -> None:
            seen["config"] = to_config(cfg)
            seen["dir"] = HydraConfig.get().runtime.output_dir
            seen["log"] = JobLog()  # its train.log, which Hydra has just set up
            seen["env"] = {str(k): str(v) for k, v in HydraConfig.get().job.env_set.items()}

        ret, directory, _ = _hydra_job(setup, num, overrides, record, config)
        if ret.status == JobStatus.FAILED or not isinstance(seen.get("config"), Config):
            raise UserError("hydra.launcher.vectorize=true trains lepton_jax configs only; job "
                            f"{num} ({' '.join(overrides)}) is not one")
        members.append(seen)
        outcomes.append(Outcome(num, ret, str(directory)))
    first = Path(outcomes[0].job_dir)
    for member, outcome in zip(members[1:], outcomes[1:], strict=True):
        own = "".join(f"; its own lines: {name}" for name in member["log"].files[:1])
        with open(Path(outcome.job_dir) / "stdout.log", "a") as f:
            f.write(f"trained in a population of {len(members)}; the population's output: "
                    f"{first / 'stdout.log'}{own}\n")
    try:
        with captured_output(first):
            try:
                with env_override(_shared_env(members, jobs)):  # as run_job sets a job's
                    results = fit_population([m["config"] for m in members],
                                             [m["dir"] for m in members],
                                             [m["log"] for m in members])
            except UserError as e:
                results = [{"status": "failed", "error": e}] * len(members)
        for outcome, result in zip(outcomes, results, strict=True):
            ret = outcome.ret
            if result["status"] == "done":
                ret.status, ret._return_value = JobStatus.COMPLETED, result["monitor"]
            else:
                error = result.get("error")
                if result["status"] == "diverged":
                    error = DivergedError(result["step"], result["loss"], result.get("hint", ""))
                ret.status, ret._return_value = JobStatus.FAILED, error
                outcome.error = f"{type(error).__name__}: {error}"
                with open(Path(outcome.job_dir) / "stderr.log", "a") as f:
                    f.write(outcome.error + "\n")  # where the summary points
                if result["status"] == "failed" and outcome is not outcomes[0]:
                    with open(Path(outcome.job_dir) / "stdout.log", "a") as f:
                        f.write(f"it did not train: {outcome.error}\n")
        held.replay(ctx, outcomes, [m["log"] for m in members])
    finally:
        for m in members:
            m["log"].close()
    return outcomes


def _shared_env(members: Sequence[dict], jobs: Sequence) -> dict[str, str]:
    """The `hydra.job.env_set` of every member, which the population trains under: members
    are grouped by their overrides, so they share it unless the primary config derives it
    from per-job values (e.g. `${hydra.job.num}`); one process cannot honour two of those."""
    from lepton_jax.errors import UserError

    env = members[0]["env"]
    for member, (num, _, _) in zip(members[1:], jobs[1:], strict=True):
        if member["env"] != env:
            key = next(k for k in sorted({*env, *member["env"]})
                       if env.get(k) != member["env"].get(k))
            raise UserError(
                f"hydra.job.env_set.{key} differs between population members ({env.get(key)!r} "
                f"for job {jobs[0][0]}, {member['env'].get(key)!r} for job {num}); a population "
                "trains in one process with one environment: give the members the same "
                "env_set, or run this sweep without hydra.launcher.vectorize=true")
    return env


class _HeldJobCallbacks:
    """Stands in for Hydra's callbacks while population members' job dirs are set up: keeps
    each member's job config, so that `replay` can call the sweep's `on_job_start` and
    `on_job_end` for it, in pairs, once its JobReturn holds its training's result."""

    def __init__(self):
        self.configs: list[DictConfig] = []

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.configs.append(config)

    def on_job_end(self, config: DictConfig, **kwargs: Any) -> None:
        pass

    def replay(self, ctx: JobContext, outcomes: Sequence[Outcome], logs: Sequence) -> None:
        """Each member's on_job_start and on_job_end, with its output and logging going to
        its own job dir as while its job ran (`logs`: its `writers.JobLog`)."""
        from hydra.experimental.callback import Callback

        callbacks = ctx.hydra_context.callbacks
        hooked = [c for c in getattr(callbacks, "callbacks", [])
                  if any(getattr(type(c), name, None) not in (None, getattr(Callback, name))
                         for name in ("on_job_start", "on_job_end"))]
        if not hooked:  # the default config's callbacks have no job hooks: skip the set-up
            return
        saved = HydraConfig.instance().cfg
        try:
            for config, outcome, log in zip(self.configs, outcomes, logs, strict=True):
                HydraConfig.instance().set_config(config)
                with captured_output(Path(outcome.job_dir)), log.as_root():
                    with env_override(config.hydra.job.env_set):  # as run_job does
                        callbacks.on_job_start(config=config, task_function=ctx.task_function)
                    callbacks.on_job_end(config=config, job_return=outcome.ret)
        finally:
            HydraConfig.instance().cfg = saved
