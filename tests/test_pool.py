"""The pool launcher's local backend: faults, retries, failure policy, summary, resume, errors."""

import os
import signal
import time

import psutil
import pytest
from pool_helpers import run_app, runs, start_app, summary, wait_for, write_app


@pytest.fixture
def app(tmp_path):
    return write_app(tmp_path)


def test_faults_are_retried_or_reported_and_the_others_finish(app):
    sweep = app.parent / "sweep"
    proc = run_app(app, "+x=0,1,2,3,4,5", "+fault1=raise", "+fault2=kill_once",
                   "+fault3=hang_once", "+fault4=kill", "hydra.launcher.timeout=4",
                   "hydra.launcher.max_retries=1", f"hydra.sweep.dir={sweep}")
    assert proc.returncode != 0, proc.stderr  # jobs 1 and 4 finally failed
    table = summary(sweep)
    assert list(table.status) == ["COMPLETED", "FAILED", "COMPLETED", "COMPLETED", "FAILED",
                                  "COMPLETED"]
    # A Python exception is not retried; a SIGKILL or a timeout is.
    assert list(table.attempts) == [1, 1, 2, 2, 2, 1]
    assert list(table.metric) == ["0.0", "", "20.0", "30.0", "", "50.0"]
    faults = "+fault1=raise +fault2=kill_once +fault3=hang_once +fault4=kill"
    assert list(table.overrides) == [f"+x={x} {faults}" for x in range(6)]
    log = proc.stdout + proc.stderr
    assert "job 1 (+x=1 +fault1=raise" in log and "failed: ValueError: boom in job x=1" in log
    # Hydra's sweeper then raises the first failure: one line, not a stack of Hydra's frames.
    assert "Traceback" not in proc.stderr
    assert (f"job 1 (+x=1 {faults}) failed: ValueError: boom in job x=1; its output: "
            f"{sweep}/1/stderr.log") in proc.stderr
    assert "killed by SIGKILL" in log and "timed out after 4 s" in log
    # Every job that finished did so once; its output went to its own job dir.
    assert runs(sweep) == {"0": ["0 "], "2": ["2 "], "3": ["3 "], "5": ["5 "]}
    assert "job x=5 done" in (sweep / "5" / "stdout.log").read_text()
    assert "ValueError: boom in job x=1" in (sweep / "1" / "stderr.log").read_text()
    # The hung job's whole process tree was killed, its child included.
    child = int((app.parent / "fault_3").read_text().split()[0])
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == psutil.STATUS_ZOMBIE


def test_transient_faults_exit_zero(app):
    sweep = app.parent / "sweep"
    proc = run_app(app, "+x=0,1,2,3", "+fault1=kill_once", "+fault2=hang_once", "+fault3=oom_once",
                   "hydra.launcher.timeout=3", "hydra.launcher.progress=true",
                   f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    table = summary(sweep)
    assert list(table.status) == ["COMPLETED"] * 4 and list(table.attempts) == [1, 2, 2, 2]
    assert list(table.metric) == [0.0, 10.0, 20.0, 30.0]
    assert "out of memory (MemoryError)" in proc.stdout
    assert "[pool] 4/4 done · 0 running · 0 failed" in proc.stderr  # the live progress line


def test_the_progress_line_shows_running_jobs_steps_and_an_eta_from_them(app):
    """Before any job finished, the line said only `0/2 done · 2 running`, for as long as the
    first jobs trained: a sweep of hour-long jobs showed no progress and no ETA for an hour.
    Jobs now report their steps (lepton_jax's `StepProgress`, through a file per slot), and the
    line shows each running job's share and an ETA from the rate of the work done."""
    sweep = app.parent / "sweep"
    # A relative sweep dir, and jobs run inside their job dirs: the file's path must not
    # depend on the job's working directory.
    proc = run_app(app, "+x=0,1", "+progress=1", "hydra.launcher.progress=true",
                   "hydra.sweep.dir=sweep", "hydra.job.chdir=true")
    assert proc.returncode == 0, proc.stderr
    lines = [line.strip() for line in proc.stderr.splitlines()]  # \r, read as \n
    assert "[pool] 0/2 done · 2 running (25%, 25%) · 0 failed" in lines  # resumed at step 1
    # 2 of 4 steps each, 1 of them since the jobs started: as much again to go.
    eta = [line for line in lines if line.startswith("[pool] 0/2 done · 2 running (50%, 50%)")]
    assert eta and all(" · ETA 0:0" in line for line in eta), lines
    # The slots' progress files go with the workers.
    assert not list((sweep / ".pool").glob("*.progress*"))


def test_the_eta_comes_from_running_jobs_steps_done_since_they_started(monkeypatch, capsys):
    """Work done is jobs finished plus the steps running jobs have trained since the launch
    (a resumed job starts part-way: its earlier steps are not this launch's rate), and the
    work left is the rest; a unit of a population counts as its jobs."""
    from types import SimpleNamespace

    from hydra_plugins.lepton_pool import _core

    now = [100.0]
    monkeypatch.setattr(_core.time, "monotonic", lambda: now[0])
    population = _core.Unit(jobs=[(0, []), (1, [])], population=True)
    resumed = _core.Unit(jobs=[(2, [])])
    shares = {population.id: 0.0, resumed.id: 0.5}
    backend = SimpleNamespace(fraction=lambda unit: shares[unit.id])
    run = _core._Run(None, SimpleNamespace(progress="true"), None, backend, {}, {}, total=4)
    run.running = {population.id: population, resumed.id: resumed}

    def line(at: float) -> str:
        now[0] = at
        run._progress()
        return capsys.readouterr().err.split("\r")[-1].strip()

    assert line(100.0) == "[pool] 0/4 done · 3 running (0%, 50%) · 0 failed"
    shares.update({population.id: 0.25, resumed.id: 0.75})
    # Done: 2 jobs x 0.25 + 0.25 = 0.75 job in 30 s; left: 2 x 0.75 + 0.25 + 1 queued = 2.75.
    assert line(130.0) == "[pool] 0/4 done · 3 running (25%, 75%) · 0 failed · ETA 1:50"
    # A job that cannot say (another app, a Ray node) counts whole until it finishes: done
    # 0.5 job in 30 s, left 1.5 + 1 + 1.
    shares[resumed.id] = None
    assert line(130.0).endswith("3 running (25%) · 0 failed · ETA 3:30")
    # A population that trains in chunks counts each chunk's steps anew: what the first chunk
    # did still counts (done 0.5 job; left 2 x 0.9 + 1 + 1), and the ETA goes on from it.
    shares[population.id] = 0.1
    assert line(130.0).endswith("3 running (10%) · 0 failed · ETA 3:48")


def test_jobs_that_ended_at_chance_are_named_under_the_table(app):
    """A job whose result.json carries lepton_jax's chance warning completed, with a metric
    that reads as any other's: the line under the table names it."""
    sweep = app.parent / "sweep"
    proc = run_app(app, "+x=0,1,2,3", "+chance1=1", "+chance3=1", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    assert "jobs 1, 3 ended at chance: each one's final model predicts one class" in \
        proc.stdout + proc.stderr
    proc = run_app(app, "+x=0,1", f"hydra.sweep.dir={app.parent / 'plain'}")
    assert "ended at chance" not in proc.stdout + proc.stderr


def test_fail_fast_cancels_the_rest(app):
    sweep = app.parent / "sweep"
    proc = run_app(app, "+x=0,1,2,3", "+fault0=raise", "hydra.launcher.slots=1",
                   "hydra.launcher.fail_fast=true", f"hydra.sweep.dir={sweep}")
    assert proc.returncode != 0
    table = summary(sweep)
    assert list(table.status) == ["FAILED", "CANCELLED", "CANCELLED", "CANCELLED"]
    assert runs(sweep) == {}
    # The cancelled jobs never started: no duration (it was the monotonic clock's reading,
    # 57481 s on one machine) and no attempt; the table shows blanks, not "None".
    assert list(table.attempts) == [1, 0, 0, 0]
    assert float(table.duration_s.iloc[0]) >= 0 and list(table.duration_s.iloc[1:]) == [""] * 3
    assert "None" not in proc.stdout


def test_max_failure_rate_aborts_a_hopeless_sweep(app):
    sweep = app.parent / "sweep"
    proc = run_app(app, "+x=0,1,2,3,4,5", "+fault0=raise", "+fault1=raise",
                   "hydra.launcher.slots=1", "hydra.launcher.max_failure_rate=0.3",
                   f"hydra.sweep.dir={sweep}")
    assert proc.returncode != 0
    assert list(summary(sweep).status) == ["FAILED", "FAILED"] + ["CANCELLED"] * 4
    assert "more than max_failure_rate=0.3" in proc.stdout + proc.stderr


def test_interrupted_sweep_resumes_each_job_once(app):
    overrides = ["+x=0,1,2,3,4,5,6,7", "+sleep=0.7", "hydra.launcher.slots=2"]
    reference = app.parent / "reference"
    assert run_app(app, *overrides, f"hydra.sweep.dir={reference}").returncode == 0
    sweep = app.parent / "sweep"
    proc = start_app(app, *overrides, f"hydra.sweep.dir={sweep}")
    manifest = sweep / ".pool" / "manifest.jsonl"
    wait_for(lambda: manifest.exists() and len(manifest.read_text().splitlines()) >= 3, 60,
             "three finished jobs")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "hydra.launcher.resume=true" in err
    first = runs(sweep)
    assert 3 <= len(first) < 8
    time.sleep(0.1)
    resumed = run_app(app, *overrides, f"hydra.sweep.dir={sweep}", "hydra.launcher.resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(first)} of 8 jobs already finished" in resumed.stdout
    # Each job ran to the end exactly once overall, in the job dir it had from the start.
    assert runs(sweep) == runs(reference) == {str(x): [f"{x} "] for x in range(8)}
    table, ref = summary(sweep), summary(reference)
    assert list(table.status) == ["COMPLETED"] * 8
    assert table[["overrides", "metric"]].equals(ref[["overrides", "metric"]])


def test_the_table_shows_metrics_as_the_report_does(app):
    """0.333333 and 3.33333 (pandas' 6 digits) on screen; report tables and done lines show 4
    decimals. The table now does too, and summary.csv keeps every digit."""
    sweep = app.parent / "sweep"
    proc = run_app(app, "+x=1,2", "+divide=3", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines() if "COMPLETED" in line]
    assert [row[3] for row in rows] == ["3.3333", "6.6667"], proc.stdout
    assert list(summary(sweep).metric) == [10 / 3, 20 / 3]


def test_resume_that_finds_nothing_to_skip_says_why(app):
    """hydra.launcher.resume=true without hydra.sweep.dir resumed nothing: the multirun went
    to a new timestamped folder and ran every job again, unremarked. It now says so and names
    the newest sweep beside it; a sweep dir whose jobs all differ is named as such."""
    first = app.parent / "multirun" / "day" / "09-00-00"
    assert run_app(app, "+x=0,1", f"hydra.sweep.dir={first}").returncode == 0
    fresh = app.parent / "multirun" / "day" / "09-05-00"
    proc = run_app(app, "+x=0,1", f"hydra.sweep.dir={fresh}", "hydra.launcher.resume=true")
    assert proc.returncode == 0, proc.stderr
    assert (f"hydra.launcher.resume=true, but {fresh} holds no finished jobs, so every job runs; "
            f"to resume a sweep, name its folder with hydra.sweep.dir={first} (the newest sweep "
            "beside it)") in proc.stdout + proc.stderr
    proc = run_app(app, "+x=5", f"hydra.sweep.dir={first}", "hydra.launcher.resume=true")
    assert (f"hydra.launcher.resume=true: {first} holds 2 finished jobs, none with these "
            "overrides; every job runs") in proc.stdout + proc.stderr
    # Hydra's default multirun/<date>/<time>: yesterday's sweep is beside it too (a sweep dir
    # elsewhere searches only its siblings, not the filesystem above them).
    yesterday = app.parent / "multirun" / "2026-11-28" / "23-59-00"
    assert run_app(app, "+x=0", f"hydra.sweep.dir={yesterday}").returncode == 0
    today = app.parent / "multirun" / "2026-11-29" / "00-01-00"
    proc = run_app(app, "+x=0", f"hydra.sweep.dir={today}", "hydra.launcher.resume=true")
    assert f"hydra.sweep.dir={yesterday} (the newest sweep beside it)" in \
        proc.stdout + proc.stderr


def test_interrupt_keeps_jobs_whose_task_had_returned(app):
    """Ctrl-C while two jobs' tasks have returned but their results are still on the way
    back (a slow pickle, 2 x 0.8 s, inside the grace): both are recorded as finished, and
    resume runs neither again."""
    overrides = ["+x=0,1", "+slow_report=0.8", "hydra.launcher.slots=2"]
    sweep = app.parent / "sweep"
    proc = start_app(app, *overrides, f"hydra.sweep.dir={sweep}")
    wait_for(lambda: len(runs(sweep)) == 2, 60, "both tasks to return")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    resumed = run_app(app, *overrides, f"hydra.sweep.dir={sweep}", "hydra.launcher.resume=true")
    assert resumed.returncode == 0, resumed.stderr
    assert "2 of 2 jobs already finished" in resumed.stdout
    assert runs(sweep) == {"0": ["0 "], "1": ["1 "]}
    assert list(summary(sweep).metric) == [0, 10]


@pytest.mark.parametrize("override, message", [
    ("hydra.launcher.backend=slurm", "hydra.launcher.backend='slurm' is not a backend; use one of: "
                                     "local, ray"),
    ("hydra.launcher.max_retries=-1", "hydra.launcher.max_retries=-1 must be 0 or more"),
    ("hydra.launcher.gpus_per_job=1", "hydra.launcher.gpus_per_job=1 but this machine has 0 GPUs"),
    ("hydra.launcher.timeout=0", "hydra.launcher.timeout=0.0 must be positive"),
    ("+hydra.launcher.vectorise=true", "hydra.launcher.vectorise is not an option of the pool "
                                       "launcher; hydra.launcher takes: backend, slots,"),
    ("+hydra.launcher.ray.adress=x", "hydra.launcher.ray.adress is not an option of the pool "
                                     "launcher; hydra.launcher.ray takes: address, num_cpus,"),
])
def test_bad_launcher_settings_get_one_message(app, override, message):
    proc = run_app(app, "+x=0,1", override, f"hydra.sweep.dir={app.parent / 'sweep'}")
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    # Said when the sweeper sets the launcher up, before it writes the sweep dir.
    assert not (app.parent / "sweep").exists()


def test_unreachable_ray_address_fails_fast(app):
    from pool_helpers import free_port

    started = time.monotonic()
    proc = run_app(app, "+x=0", "hydra.launcher.backend=ray",
                   f"hydra.launcher.ray.address=127.0.0.1:{free_port()}",
                   "hydra.launcher.ray.connect_timeout=2", f"hydra.sweep.dir={app.parent / 's'}")
    assert proc.returncode == 2 and "cannot reach a Ray cluster at 127.0.0.1:" in proc.stderr
    assert "Traceback" not in proc.stderr and time.monotonic() - started < 60


def test_optuna_study_through_the_pool(app):
    sweep = app.parent / "sweep"
    proc = run_app(app, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=3",
                   "hydra.sweeper.direction=maximize", "hydra.sweeper.sampler.seed=1",
                   "+x=range(0,10)", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr
    table = summary(sweep)
    # Two batches of three trials, numbered on from each other, all in one summary.
    assert list(table.index) == list(range(6)) and set(table.status) == {"COMPLETED"}
    xs = [int(o.split("=")[1]) for o in table.overrides]
    assert list(table.metric) == [10.0 * x for x in xs]
    import yaml

    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(table.metric) and best["best_params"]["+x"] == max(xs)


def test_launcher_reuses_the_configs_the_sweeper_composed():
    """The sweeper's validation composes each job once; the launcher takes that config (once,
    and only for the same sweep config) instead of composing the job again."""
    from hydra_plugins.lepton_pool._job import RememberingLoader, remembering
    from hydra.types import HydraContext

    class Loader:
        calls = 0

        def load_sweep_config(self, master_config, sweep_overrides):
            Loader.calls += 1
            return {"master": master_config, "overrides": list(sweep_overrides)}

        def get_sources(self):
            return ["source"]

    context = HydraContext(config_loader=Loader(), callbacks=None)
    loader = remembering(context)
    assert remembering(context) is loader and isinstance(context.config_loader, RememberingLoader)
    master, other = object(), object()
    first = loader.load_sweep_config(master, ["a=1"])
    loader.load_sweep_config(master, ["a=2"])
    assert loader.get_sources() == ["source"]  # everything else is the wrapped loader's
    assert loader.take(master, ["a=1"]) is first
    assert loader.take(master, ["a=1"]) is None  # taken once
    assert loader.take(other, ["a=2"]) is None  # composed for another sweep config
    assert Loader.calls == 2


def _worker_pid(cfg):
    return os.getpid()


def test_workers_start_when_the_sweeper_sets_the_launcher_up(hydra_sweep_runner, tmp_path,
                                                             monkeypatch):
    """The local pool's workers are started in setup() (before the sweeper validates the
    batch) and are the processes that then run the jobs."""
    from hydra_plugins.lepton_pool import _core

    prestarted = []
    original = _core.prestart

    def spy(launcher):
        backend = original(launcher)
        prestarted.append({w.proc.pid for w in backend.workers.values()})
        return backend

    monkeypatch.setattr(_core, "prestart", spy)
    sweep = hydra_sweep_runner(calling_file=None, calling_module="hydra.test_utils.a_module",
                               task_function=_worker_pid, config_path="configs",
                               config_name="compose.yaml",
                               overrides=["hydra/launcher=pool", "hydra.launcher.slots=2",
                                          "+x=1,2,3,4"], temp_dir=tmp_path)
    with sweep:
        pids = {ret.return_value for ret in sweep.returns[0]}
    assert len(prestarted) == 1 and len(prestarted[0]) == 2
    assert pids and pids <= prestarted[0]


def test_progress_eta_counts_down_between_finished_jobs(monkeypatch, capsys):
    """The ETA is estimated when a job finishes, then counts down; re-estimating it from the
    rate at every redraw made it grow while jobs ran."""
    from types import SimpleNamespace

    from hydra_plugins.lepton_pool import _core

    now = [100.0]
    monkeypatch.setattr(_core.time, "monotonic", lambda: now[0])
    run = _core._Run(None, SimpleNamespace(progress="true"), None, None, {}, {}, total=4)

    def eta(at: float) -> str:
        now[0] = at
        run._progress()
        return capsys.readouterr().err.rsplit("ETA ", 1)[1].strip()

    run.done = 1
    assert eta(110.0) == "0:30"  # 3 jobs left at 10 s each
    assert eta(115.0) == "0:25"
    assert eta(150.0) == "0:00"  # overdue: not negative
    run.done = 2
    assert eta(160.0) == "1:00"  # re-estimated: 60 s for 2 jobs, 2 left
