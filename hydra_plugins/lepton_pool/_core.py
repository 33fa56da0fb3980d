"""The pool launcher's work: schedule jobs on slots (or Ray), apply the failure policy,
keep the manifest and summary, and hand Hydra one JobReturn per job."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, NoReturn, Optional, Sequence

import cloudpickle
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from hydra_plugins.lepton_pool._job import JobContext, Outcome, remembering
from hydra_plugins.lepton_pool._records import Book, job_key, metric_of
from hydra_plugins.lepton_pool._slots import PoolError, counted, make_slots, visible_gpus

log = logging.getLogger(__name__)

BACKENDS = ("local", "ray")
# On Ctrl-C, how long running jobs get to stop their tasks before their workers are killed.
INTERRUPT_GRACE_S = 3.0
# Jobs' worth of steps done before their rate gives an ETA: the first steps' rate includes
# start-up and compilation (a 12 s sweep was first estimated at 6 minutes).
_ETA_AFTER = 0.1
_ids = itertools.count()


class JobError(CompactHydraException):
    """Why a job failed, in one line: Hydra's sweeper raises the first failed job's return
    value after the batch, and prints this kind without a stack of its own frames. The job's
    own exception, when it raised one, is the `__cause__` (its traceback is in the job dir's
    stderr.log)."""


@dataclass
class Unit:
    """What one worker runs at a time: a job, or a population of jobs trained together."""

    jobs: list[tuple[int, list[str]]]
    population: bool = False
    attempts: int = 0
    started: float = 0.0
    node: str = ""
    killing: bool = False  # the launcher is killing it (timeout); its fault is on the way
    configs: dict = field(default_factory=dict)  # job number -> config the sweeper composed
    progress0: Optional[float] = None  # the share of its steps done when first seen running
    share: float = 0.0  # the share last seen
    id: int = field(default_factory=lambda: next(_ids))

    def message(self) -> tuple:
        jobs = [(num, overrides, self.configs.get(num)) for num, overrides in self.jobs]
        return ("population", jobs) if self.population else ("job", jobs[0])

    def label(self) -> str:
        nums = ",".join(str(num) for num, _ in self.jobs)
        if self.population:
            return f"population of jobs {nums}"
        return f"job {nums} ({' '.join(filter_overrides(self.jobs[0][1])) or 'no overrides'})"


def check_options(opts: DictConfig) -> None:
    from hydra_plugins.lepton_pool.config import PoolLauncherConf, RayConf

    # Hydra lets `+hydra.launcher.vectorise=true` add a key; the launcher would ignore it.
    for where, node, schema in (("hydra.launcher", opts, PoolLauncherConf),
                                ("hydra.launcher.ray", opts.get("ray") or {}, RayConf)):
        known = [f.name for f in dataclasses.fields(schema) if f.name != "_target_"]
        extra = [key for key in node if key not in known and key != "_target_"]
        if extra:
            raise PoolError(f"{where}.{extra[0]} is not an option of the pool launcher; "
                            f"{where} takes: {', '.join(known)}")
    if opts.backend not in BACKENDS:
        raise PoolError(f"hydra.launcher.backend={opts.backend!r} is not a backend; "
                        f"use one of: {', '.join(BACKENDS)}")
    if opts.max_retries < 0:
        raise PoolError(f"hydra.launcher.max_retries={opts.max_retries} must be 0 or more "
                        "(0: never retry)")
    if opts.timeout is not None and opts.timeout <= 0:
        raise PoolError(f"hydra.launcher.timeout={opts.timeout} must be positive seconds, or null")
    if not 0 < opts.max_failure_rate <= 1:
        raise PoolError(f"hydra.launcher.max_failure_rate={opts.max_failure_rate} must be in "
                        "(0, 1]; 1 never aborts")
    if opts.max_population < 0:
        raise PoolError(f"hydra.launcher.max_population={opts.max_population} must be 0 "
                        "(no limit) or more")
    if str(opts.progress).lower() not in ("auto", "true", "false"):
        raise PoolError(f"hydra.launcher.progress={opts.progress!r} must be auto, true or false")


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]],
           initial_job_idx: int) -> Sequence[JobReturn]:
    try:
        return _launch(launcher, job_overrides, initial_job_idx)
    except PoolError as e:
        fail(e)


def _nothing_to_resume(sweep_dir: Path, finished: int) -> str:
    """hydra.launcher.resume=true found no job to skip: most often the sweep dir is a new
    timestamped one (hydra.sweep.dir left out), and every job ran again unremarked. Names
    the newest sweep dir beside it that a pool launch recorded jobs in."""
    if finished:
        return (f"hydra.launcher.resume=true: {sweep_dir} holds "
                f"{counted(finished, 'finished job')}, none with these overrides; every job runs")
    # Its siblings; under Hydra's default multirun/<date>/<time>, the other dates' too (a
    # sweep dir such as /tmp/x must not send the search through the whole filesystem).
    places = [(sweep_dir.parent, "*/.pool/manifest.jsonl")]
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", sweep_dir.parent.name):
        places.append((sweep_dir.parent.parent, "*/*/.pool/manifest.jsonl"))
    try:
        manifests = [m for folder, pattern in places for m in folder.glob(pattern)
                     if m.parents[1].resolve() != sweep_dir.resolve()]
        newest = max(manifests, key=lambda m: m.stat().st_mtime, default=None)
    except OSError:  # a folder beside it it may not read: no name to give
        newest = None
    return (f"hydra.launcher.resume=true, but {sweep_dir} holds no finished jobs, so every job "
            "runs; to resume a sweep, name its folder with hydra.sweep.dir=" +
            (f"{newest.parents[1]} (the newest sweep beside it)" if newest else "<its dir>"))


def fail(error: PoolError) -> NoReturn:
    """One line naming the bad option, exit status 2, no traceback."""
    print(f"error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(2) from None


def _launch(launcher: Any, job_overrides: Sequence[Sequence[str]],
            initial_job_idx: int) -> Sequence[JobReturn]:
    setup_globals()
    config, opts = launcher.config, launcher.params
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    check_options(opts)
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
    book = Book(sweep_dir)
    finished = book.finished()
    results: dict[int, JobReturn] = {}
    rows: dict[int, dict] = {}
    if opts.resume:
        for num, overrides in jobs:
            record = finished.get(job_key(overrides))
            if record is not None:
                results[num] = Book.job_return(record, overrides, config.hydra.output_subdir)
                rows[num] = {**{k: record.get(k) for k in ("status", "metric", "duration_s",
                                                            "node", "attempts", "dir")},
                             "job": num, "overrides": " ".join(overrides)}
        if results:
            log.info(f"Resuming {sweep_dir}: {len(results)} of {len(jobs)} jobs already finished")
        elif not launcher.launched:
            log.warning(_nothing_to_resume(sweep_dir, len(finished)))
    elif finished and not launcher.launched:
        log.warning(f"{sweep_dir} already holds {len(finished)} finished jobs; running every job "
                    "again (hydra.launcher.resume=true would skip the finished ones)")
    todo = [job for job in jobs if job[0] not in results]
    loader = remembering(launcher.hydra_context)
    composed = {num: loader.take(config, overrides) for num, overrides in jobs}
    backend, launcher.prestarted = launcher.prestarted, None
    if backend is not None and not todo:
        backend.close()
        backend = None
    elif backend is None and todo:
        backend = _new_backend(launcher)
    units = _units(opts, todo, backend.capacity if backend else 1)
    for unit in units:
        unit.configs = {num: composed[num] for num, _ in unit.jobs if composed[num] is not None}
    if backend is not None:
        groups = f" as {counted(len(units), 'population')}" if opts.vectorize else ""
        log.info(f"Pool launcher ({backend.description()}) is launching "
                 f"{counted(len(todo), 'job')}{groups}")
    log.info(f"Launching jobs, sweep output dir : {sweep_dir}")
    for num, overrides in todo:
        log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
    run = _Run(launcher, opts, book, backend, results, rows, len(todo))
    try:
        if backend is not None:
            run.schedule(units)
    except KeyboardInterrupt:
        run.give_up(f"interrupted; rerun the same command with hydra.launcher.resume=true "
                    f"and hydra.sweep.dir={sweep_dir} to finish the sweep", "INTERRUPTED")
        run.finish_table()
        print(f"interrupted: {run.done} jobs finished and are recorded in {book.manifest}; rerun "
              f"with hydra.launcher.resume=true hydra.sweep.dir={sweep_dir} to run the rest",
              file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    finally:
        if backend is not None:
            backend.close()
    run.finish_table()
    log.info(f"{counted(len(todo), 'job')} ran in {time.monotonic() - run.started:.2f} s "
             f"({run.done - run.failed} completed, {run.failed} failed)")
    launcher.launched.update(num for num, _ in jobs)
    return [results[num] for num, _ in jobs]


@contextlib.contextmanager
def _interrupt_between() -> Iterator[None]:
    """Holds a SIGINT that arrives inside the block and raises it (KeyboardInterrupt) when the
    block ends; a no-op outside the main thread, where Python cannot set signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
    if held:
        raise KeyboardInterrupt


def _context(launcher: Any) -> JobContext:
    """What every worker gets once: Hydra's context (with the plain config loader), the sweep
    config, the task function, Hydra's singletons, cwd and sys.path."""
    loader = remembering(launcher.hydra_context)
    return JobContext(dataclasses.replace(launcher.hydra_context, config_loader=loader.loader),
                      launcher.config, launcher.task_function, Singleton.get_state(),
                      os.getcwd(), list(sys.path))


def _new_backend(launcher: Any) -> Any:
    return _backend(launcher.params, cloudpickle.dumps(_context(launcher)),
                    Path(str(launcher.config.hydra.sweep.dir)))


def prestart(launcher: Any) -> Any:
    """Starts the local pool's workers when the sweeper sets the launcher up, so that their
    start-up (interpreter, imports of the task's modules: JAX for lepton_jax) overlaps the
    sweeper composing every job to validate the batch. Returns None for Ray. Raises
    PoolError for bad options (or slots), before the sweeper writes the sweep dir."""
    opts = launcher.params
    check_options(opts)
    if opts.backend != "local":
        return None
    backend = _new_backend(launcher)
    backend.start()
    return backend


def _units(opts: DictConfig, todo: list, slots: int) -> list[Unit]:
    if not opts.vectorize or not todo:
        return [Unit([job]) for job in todo]
    from hydra_plugins.lepton_pool._vectorize import populations

    return [Unit(group, population=len(group) > 1)
            for group in populations(todo, opts.max_population, slots)]


def _backend(opts: DictConfig, ctx: bytes, sweep_dir: Path) -> Any:
    if opts.backend == "ray":
        from hydra_plugins.lepton_pool._ray import RayPool

        return RayPool(opts, ctx, sweep_dir / ".pool")
    from hydra_plugins.lepton_pool._local import LocalPool

    gpus = visible_gpus()
    slots = make_slots(opts.slots, opts.gpus_per_job, opts.jobs_per_gpu, opts.cpus_per_job, gpus)
    return LocalPool(slots, ctx, os.getcwd(), sweep_dir / ".pool", bool(gpus))


def _interactive() -> bool:
    """A terminal, or a Jupyter kernel (a notebook's `sweep(..., launcher="pool")`), which
    redraws a line ending in a carriage return as a terminal does."""
    from lepton_jax.progress import is_interactive

    return sys.stderr.isatty() or is_interactive()


class _Run:
    """One launch's bookkeeping: queue, retries, failure policy, progress, summary rows."""

    def __init__(self, launcher, opts, book, backend, results, rows, total):
        self.launcher, self.opts, self.book, self.backend = launcher, opts, book, backend
        self.results, self.rows, self.total = results, rows, total
        self.queue: collections.deque = collections.deque()
        self.running: dict[int, Unit] = {}
        self.done = self.failed = 0
        self.first_error_shown = False
        self.started = time.monotonic()
        self._eta_done, self._eta_end = 0, 0.0  # jobs done at the last ETA estimate, its end
        self._width = 0  # of the progress line last drawn
        progress = str(opts.progress).lower()
        self.live = progress == "true" or (progress == "auto" and _interactive())

    def schedule(self, units: list[Unit]) -> None:
        self.queue.extend(units)
        aborted = None
        while (self.queue or self.running) and aborted is None:
            # Ctrl-C takes effect between rounds: inside one, it could land between reading a
            # job's result and recording it, and the finished job would run again on resume.
            with _interrupt_between():
                while self.queue and self.backend.free() > 0:
                    unit = self.queue.popleft()
                    unit.attempts += 1
                    unit.started, unit.progress0 = time.monotonic(), None
                    self.backend.submit(unit)
                    self.running[unit.id] = unit
                for unit, kind, value in self.backend.wait(0.1):
                    self.running.pop(unit.id, None)
                    aborted = self._settle(unit, kind, value) or aborted
                if self.opts.timeout is not None:
                    now = time.monotonic()
                    for unit in list(self.running.values()):
                        if now - unit.started > self.opts.timeout and not unit.killing:
                            unit.killing = True
                            self.backend.kill(unit, f"timed out after {self.opts.timeout:g} s")
                self._progress()
        if aborted is not None:
            self.give_up(aborted, "CANCELLED")
        if self.live:
            sys.stderr.write("\n")

    def _settle(self, unit: Unit, kind: str, value: Any) -> Optional[str]:
        """Records a finished unit; returns why the sweep must stop, if it must.

        kind: ok (outcomes), fault (killed or timed out: retried), lost (Ray gave up after
        its own retries), error (the worker could not run the unit at all).
        """
        if kind == "ok":
            faults = [o.fault for o in value if o.fault]
            if faults and unit.attempts <= self.opts.max_retries:
                return self._settle(unit, "fault", faults[0])
            reasons = [self._finish(o, unit) for o in value]
            return next((r for r in reasons if r), None)
        if kind == "fault" and unit.attempts <= self.opts.max_retries:
            unit.killing = False
            log.warning(f"{unit.label()}: {value} on {unit.node}; retry "
                        f"{unit.attempts} of {self.opts.max_retries}")
            self.queue.appendleft(unit)
            return None
        what = (f"{value} on {unit.node or 'its node'} ({unit.attempts} attempts)"
                if kind in ("fault", "lost")
                else f"the launcher failed to run it:\n{value}")
        reasons = [self._finish(self._failure(num, overrides, what), unit)
                   for num, overrides in unit.jobs]
        return next((r for r in reasons if r), None)

    def _failure(self, num: int, overrides: list, why: str, status: str = "FAILED") -> Outcome:
        ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED,
                        _return_value=JobError(f"job {num} ({' '.join(overrides)}): {why}"))
        return Outcome(num, ret, self._job_dir(num, overrides), error=why, status=status)

    def _job_dir(self, num: int, overrides: list) -> str:
        from hydra_plugins.lepton_pool._job import job_config, job_dir

        ctx = JobContext(self.launcher.hydra_context, self.launcher.config, None, None, "", [])
        try:
            return str(job_dir(job_config(ctx, num, overrides)))
        except Exception:  # the overrides themselves may be what failed
            return ""

    def _finish(self, outcome: Outcome, unit: Unit) -> Optional[str]:
        ret, num = outcome.ret, outcome.num
        overrides = list(ret.overrides or dict(unit.jobs)[num])
        ok = ret.status == JobStatus.COMPLETED
        status = outcome.status or ("COMPLETED" if ok else "FAILED")
        value = ret._return_value
        row = {"job": num, "overrides": " ".join(overrides), "status": status,
               "metric": metric_of(value) if ok else None,
               # A job given up before it started has no duration (it was counted from 0).
               "duration_s": round(time.monotonic() - unit.started, 3) if unit.attempts
               else None, "node": unit.node,
               "attempts": unit.attempts, "dir": outcome.job_dir}
        self.results[num], self.rows[num] = ret, row
        if status in ("INTERRUPTED", "CANCELLED"):
            return None
        self.book.record(row, overrides, value if ok else None)
        if ok:
            self.done += 1
            return None
        self.failed += 1
        self.done += 1
        last = (outcome.error.strip().splitlines() or ["?"])[-1].rstrip(".")
        # A traceback's last line names the exception by its module path: the short name, as
        # a population member's error says it (`UserError: ...`).
        last = re.sub(r"^(?:\w+\.)+(?=\w+: )", "", last)
        where = f"; its output: {outcome.job_dir}/stderr.log" if outcome.job_dir else ""
        line = f"job {num} ({' '.join(overrides)}) failed: {last}{where}"
        if not isinstance(value, JobError):  # what Hydra's sweeper raises: this one line
            ret._return_value = JobError(line)
            ret._return_value.__cause__ = value
        if not self.first_error_shown:
            self.first_error_shown = True
            log.error(line)
        else:
            log.error(f"job {num} failed")
        if self.opts.fail_fast:
            return f"job {num} failed and fail_fast=true"
        if self.failed > self.opts.max_failure_rate * self.total:
            return (f"{self.failed} of {self.total} jobs failed, more than max_failure_rate="
                    f"{self.opts.max_failure_rate:g}")
        return None

    def _collect(self, timeout: float) -> None:
        """Records the results that arrive within `timeout`; units that end otherwise go
        back to the queue, to be given up with it."""
        try:
            arrived = self.backend.wait(timeout) if self.running else []
        except Exception:  # noqa: BLE001 - a connection broken by the interrupt: nothing to read
            arrived = []
        for unit, kind, value in arrived:
            self.running.pop(unit.id, None)
            if kind == "ok" and not any(o.fault for o in value):
                for outcome in value:
                    self._finish(outcome, unit)
            else:
                self.queue.appendleft(unit)

    def give_up(self, why: str, status: str) -> None:
        """Stops running work; every job without a result gets a failed one saying why.
        Results the workers already sent are recorded first: those jobs finished. On an
        interrupt, the local pool's workers are asked to stop their tasks and get
        `INTERRUPT_GRACE_S` to do so, so that a job whose task had already returned is
        recorded as finished instead of being killed on its way to report (and rerun on
        resume); what is still running after that is killed."""
        self._collect(0)
        interrupt = getattr(self.backend, "interrupt", None)
        if status == "INTERRUPTED" and interrupt is not None and self.running:
            for unit in list(self.running.values()):
                interrupt(unit)
            deadline = time.monotonic() + INTERRUPT_GRACE_S
            while self.running and time.monotonic() < deadline:
                self._collect(max(deadline - time.monotonic(), 0))
        for unit in self.running.values():
            self.backend.kill(unit, why)
        pending = list(self.running.values()) + list(self.queue)
        self.running.clear()
        self.queue.clear()
        if pending and status == "CANCELLED":
            log.error(f"stopping the sweep: {why}; {sum(len(u.jobs) for u in pending)} jobs "
                      "cancelled")
        for unit in pending:
            for num, overrides in unit.jobs:
                self._finish(self._failure(num, overrides, f"{status.lower()}: {why}", status),
                             unit)

    def _progress(self) -> None:
        if not self.live:
            return
        now = time.monotonic()
        seconds, shares = None, []  # the time left, the running units' shares of their steps
        fraction = getattr(self.backend, "fraction", None)
        running = sum(len(u.jobs) for u in self.running.values())
        moved = left = 0.0  # jobs' worth of work done since the launch, and still to do
        for unit in self.running.values():
            share = fraction(unit) if fraction else None
            if share is None:
                left += len(unit.jobs)
                continue
            if unit.progress0 is None:  # a resumed job starts part-way
                unit.progress0 = unit.share = share
            if share < unit.share:
                # A new count of steps (a population too big for memory trains in chunks,
                # each counting its own): the work done before it still counts.
                unit.progress0 -= unit.share - share
            unit.share = share
            shares.append(share)
            moved += (share - unit.progress0) * len(unit.jobs)
            left += (1 - share) * len(unit.jobs)
        left += self.total - self.done - running
        if moved >= _ETA_AFTER or (moved > 0 and self.done):
            # Running jobs report their steps: the rate of all work so far, jobs finished
            # and the parts of running ones, gives the time left.
            seconds = (now - self.started) * left / (self.done + moved)
        elif self.done:
            # Re-estimated at each finished job from the rate so far, then counted down (a
            # rate taken at every redraw made the ETA grow while jobs ran).
            if self.done != self._eta_done:
                self._eta_done = self.done
                self._eta_end = now + (self.total - self.done) * (now - self.started) / self.done
            seconds = max(self._eta_end - now, 0.0)
        eta = "" if seconds is None else f" · ETA {int(seconds // 60)}:{int(seconds % 60):02d}"
        at = f" ({', '.join(f'{s:.0%}' for s in shares)})" if 0 < len(shares) <= 4 else ""
        line = f"[pool] {self.done}/{self.total} done · {running} running{at} · {self.failed} failed{eta}"
        # Spaces cover what a longer line before it left on the screen.
        sys.stderr.write(f"\r{line.ljust(self._width)}")
        sys.stderr.flush()
        self._width = len(line)

    def finish_table(self) -> None:
        if not self.rows:
            return
        frame = self.book.write_summary(self.rows)
        shown = frame[frame.job.isin(list(self.rows))].drop(columns=["dir"])
        # On screen, only the overrides that differ between jobs (summary.csv keeps them all).
        split = shown.overrides.fillna("").str.split()
        common = set.intersection(*map(set, split)) if len(shown) > 1 else set()
        shown = shown.assign(overrides=[" ".join(o for o in items if o not in common)
                                        for items in split])
        # Metrics as report tables show them (0.9222, not 0.922222; summary.csv keeps every
        # digit); blank, not "None", where a job has no metric or duration.
        from lepton_jax.writers import metric_value

        shown = shown.astype(object).where(shown.notna(), "")
        shown["metric"] = [metric_value(v) if isinstance(v, float) else v for v in shown.metric]
        # Each shown job's result.json, read once: the metric's name heads the column where
        # they agree on one (val/mse), and their warnings name the jobs that ended at chance.
        results = [_result(folder) for folder in frame.loc[shown.index, "dir"]]
        names = {result.get("monitored") for result in results}
        names.discard(None)
        if len(names) == 1:
            shown = shown.rename(columns={"metric": names.pop()})
        print(shown.to_string(index=False), flush=True)
        if common:
            log.info(f"every job also had: {' '.join(sorted(common))}")
        chance = [str(job) for job, result in zip(shown.job, results, strict=True)
                  if result.get("warnings")]  # lepton_jax's run at chance
        if chance:
            from lepton_jax.writers import at_chance_reason

            log.warning(f"job{'s' * (len(chance) > 1)} {', '.join(chance)} ended at chance: "
                        f"{at_chance_reason(len(chance))}")
        log.info(f"summary: {self.book.summary}")


def _result(folder: Any) -> dict:
    """The job dir's result.json ({} for a job of another app, one that failed, or a dir on
    another machine of a Ray cluster)."""
    try:
        result = json.loads((Path(str(folder)) / "result.json").read_text())
    except (OSError, ValueError):
        return {}
    return result if isinstance(result, dict) else {}
