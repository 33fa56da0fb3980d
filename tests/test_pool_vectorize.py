"""`hydra.launcher.vectorize=true`: sweep jobs trained as populations through the pool
launcher, with outputs that match the same sweep run job by job."""

import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO, run_cli
from pool_helpers import summary, wait_for

from lepton_jax.checkpoint import Checkpointer

pytestmark = pytest.mark.slow
SMALL = ["model.hidden=[64]", "trainer.epochs=2", "trainer.batch_size=64"]


def _records(job_dir):
    return [json.loads(line) for line in (job_dir / "metrics.jsonl").read_text().splitlines()]


def _logged(job_dir, logger="lepton_jax.run") -> list[str]:
    """The messages of `logger` in train.log, without Hydra's prefix."""
    return [line.split(" - ", 1)[1] for line in (job_dir / "train.log").read_text().splitlines()
            if f"][{logger}][" in line]


def _record_lines(lines: list[str]) -> list[tuple[int, list[tuple[str, float]]]]:
    """`step 22 | epoch 1 | train/loss 0.8007` lines as (22, [("epoch", 1.0), ...])."""
    parsed = []
    for line in lines:
        if line.startswith("step "):
            head, *parts = line.split(" | ")
            pairs = [part.rsplit(" ", 1) for part in parts]
            parsed.append((int(head.split()[1]),
                           [(k, float("nan") if v == "diverged" else float(v)) for k, v in pairs]))
    return parsed


def _assert_same_log(a, b):
    """A member's train.log holds its standalone job's lines: the same record lines (values
    to the printed digits), a header naming the population, and a done line of its own dir."""
    la, lb = _logged(a), _logged(b)
    ra, rb = _record_lines(la), _record_lines(lb)
    assert [(step, [k for k, _ in pairs]) for step, pairs in ra] == \
        [(step, [k for k, _ in pairs]) for step, pairs in rb]
    for (_, pa), (_, pb) in zip(ra, rb, strict=True):
        np.testing.assert_allclose([v for _, v in pa], [v for _, v in pb], rtol=1e-3, atol=1e-4)
    assert "in a population of" in lb[0] and "in a population of" not in la[0]
    assert la[0].endswith(f" | run dir {a}") and lb[0].endswith(f" | run dir {b}")
    assert la[0].split(" | ")[:4] == lb[0].split(" | ")[:4]  # model, data, optimizer, epochs
    if "event diverged" not in lb[-1]:
        assert lb[-1].startswith("done: ") and lb[-1].endswith(f" | run dir {b}")


def _assert_same_job(a, b):
    ra, rb = _records(a), _records(b)
    assert [sorted(r) for r in ra] == [sorted(r) for r in rb]
    for x, y in zip(ra, rb, strict=True):
        for key in x:
            np.testing.assert_allclose(x[key], y[key], rtol=2e-5, atol=1e-6, err_msg=key)
    pa = Checkpointer(a / "checkpoints", 3).restore_arrays()
    pb = Checkpointer(b / "checkpoints", 3).restore_arrays()
    for la, lb in zip(jax.tree.leaves(pa["params"]), jax.tree.leaves(pb["params"]), strict=True):
        np.testing.assert_allclose(la, lb, rtol=2e-5, atol=1e-6)


def test_vectorized_sweep_matches_the_job_by_job_sweep(tmp_path):
    # Hydra's own job callback pickles each job's config and JobReturn (on_job_start/end).
    grid = ["optim.lr=0.02,0.05,1e5", "seed=0,1", "optim.schedule=constant",
            "+hydra.callbacks.pickle._target_=hydra.experimental.callbacks.PickleJobInfoCallback"]
    plain = run_cli("-m", *SMALL, *grid, "hydra/launcher=pool", f"hydra.sweep.dir={tmp_path / 'plain'}",
                    cwd=tmp_path)
    vector = run_cli("-m", *SMALL, *grid, "hydra/launcher=pool", "hydra.launcher.vectorize=true",
                     f"hydra.sweep.dir={tmp_path / 'vector'}", cwd=tmp_path)
    # lr=1e5 diverges in both (the sweep then exits non-zero); the others are unaffected.
    assert plain.returncode != 0 and vector.returncode != 0
    assert "launching 6 jobs as 2 populations" in vector.stdout  # one per slot
    sp, sv = summary(tmp_path / "plain"), summary(tmp_path / "vector")
    assert list(sv.status) == list(sp.status) == ["COMPLETED"] * 4 + ["FAILED"] * 2
    assert list(sv.overrides) == list(sp.overrides)
    np.testing.assert_allclose(sv.metric[:4].astype(float), sp.metric[:4].astype(float), atol=1e-6)
    for job in range(4):
        a, b = tmp_path / "plain" / str(job), tmp_path / "vector" / str(job)
        assert {p.name for p in a.iterdir()} == {p.name for p in b.iterdir()}
        assert (a / ".hydra" / "overrides.yaml").read_text() == (b / ".hydra" / "overrides.yaml").read_text()
        _assert_same_job(a, b)
        _assert_same_log(a, b)
    for job in range(6):  # Hydra's job callbacks saw each member end with its own result
        a, b = tmp_path / "plain" / str(job) / ".hydra", tmp_path / "vector" / str(job) / ".hydra"
        ja, jb = (pickle.loads((d / "job_return.pickle").read_bytes()) for d in (a, b))
        assert ja.status == jb.status and ja.overrides == jb.overrides
        if job < 4:
            assert jb.return_value == pytest.approx(ja.return_value, abs=1e-6)
        else:
            assert type(ja._return_value).__name__ == type(jb._return_value).__name__ == \
                "DivergedError"
        config = pickle.loads((b / "config.pickle").read_bytes())
        assert config.hydra.runtime.output_dir == str(b.parent)
        said = _logged(b.parent, "hydra.experimental.callbacks.PickleJobInfoCallback")
        assert said == [f"Saving job configs in {b / 'config.pickle'}",  # its own, only
                        f"Saving job_return in {b / 'job_return.pickle'}"], said
    for job in (2, 3):  # not first in their population: their stdout.log says where to look
        said = (tmp_path / "vector" / str(job) / "stdout.log").read_text()
        assert f"its own lines: {tmp_path / 'vector' / str(job) / 'train.log'}" in said, said
    for job in (4, 5):  # diverged: the same last line in both logs
        _assert_same_log(tmp_path / "plain" / str(job), tmp_path / "vector" / str(job))
        assert _logged(tmp_path / "vector" / str(job))[-1].split(" | ")[1] == "event diverged"
    result = json.loads((tmp_path / "vector" / "4" / "result.json").read_text())
    assert result["status"] == "diverged"
    assert "training diverged at step" in (tmp_path / "vector" / "4" / "stderr.log").read_text() or \
        "DivergedError" in vector.stdout + vector.stderr


def test_a_member_with_a_refused_config_fails_alone(tmp_path):
    """As in a job-by-job sweep, a member whose value is refused fails with its own message
    (in its stderr.log, where the summary points), and the rest of its population trains."""
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", *SMALL, "optim.lr=0.05,-1,0.1",
                   "hydra/launcher=pool", "hydra.launcher.vectorize=true",
                   "hydra.launcher.slots=1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode != 0
    assert "(local pool of 1 slot (slot0: " in proc.stdout  # counts agree with their nouns
    assert "launching 3 jobs as 1 population" in proc.stdout
    assert list(summary(sweep).status) == ["COMPLETED", "FAILED", "COMPLETED"]
    message = "UserError: optim.lr (-1.0) must be > 0"
    assert "job 1 (" in proc.stderr and " optim.lr=-1) failed: " + message in proc.stderr, \
        proc.stderr
    assert message in (sweep / "1" / "stderr.log").read_text()
    assert f"it did not train: {message}" in (sweep / "1" / "stdout.log").read_text()
    assert "members differ in optim.lr" in (sweep / "0" / "stdout.log").read_text()
    for job in (0, 2):
        assert json.loads((sweep / str(job) / "result.json").read_text())["population"] == 2


def test_optuna_drives_populations_batch_by_batch(tmp_path):
    """Optuna's sweeper hands the launcher a batch of n_jobs trials at a time; each batch
    trains as one population, and the study sees one result per trial."""
    import yaml

    sweep = tmp_path / "optuna"
    proc = run_cli("-m", *SMALL, "hydra/sweeper=optuna", "hydra.sweeper.n_trials=6",
                   "hydra.sweeper.n_jobs=3", "hydra.sweeper.direction=maximize",
                   "hydra.sweeper.sampler.seed=1", "optim.lr=interval(0.01,0.2)", "seed=choice(0,1)",
                   "hydra/launcher=pool", "hydra.launcher.vectorize=true", "hydra.launcher.slots=1",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("launching 3 jobs as 1 population") == 2, proc.stdout
    table = summary(sweep)
    assert list(table.index) == list(range(6)) and set(table.status) == {"COMPLETED"}
    # On screen the metric column is headed by the metric's name (summary.csv keeps `metric`).
    assert re.search(r"^job +overrides +status +val/accuracy +duration_s", proc.stdout, re.M)
    for job in range(6):
        result = json.loads((sweep / str(job) / "result.json").read_text())
        assert result["strategy"] == "population" and result["population"] == 3
        assert result["monitored"] == "val/accuracy"
        assert result["monitor"] == pytest.approx(float(table.metric[job]))
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(table.metric.astype(float)))


def test_grouping_by_structural_fields(tmp_path):
    tiny = ["data.limit=300", "trainer.epochs=1", "trainer.batch_size=50", "trainer.eval_every_epochs=0"]
    proc = run_cli("-m", *tiny, "model=mlp,lenet5", "optim.lr=0.01,0.02,0.05", "seed=0,1",
                   "hydra/launcher=pool", "hydra.launcher.vectorize=true",
                   f"hydra.sweep.dir={tmp_path / 's'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "launching 12 jobs as 2 populations" in proc.stdout
    for job in range(12):
        run = json.loads((tmp_path / "s" / str(job) / "run.json").read_text())
        assert run["population"] == 6
        assert run["config"]["model"]["name"] == ("mlp" if job < 6 else "lenet5")
    alone = run_cli("-m", *tiny, "model.hidden=[16],[32]", "hydra/launcher=pool",
                    "hydra.launcher.vectorize=true", "hydra.launcher.slots=1",
                    f"hydra.sweep.dir={tmp_path / 'a'}", cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    assert "launching 2 jobs as 2 populations" in alone.stdout
    for job in range(2):
        assert "population" not in json.loads((tmp_path / "a" / str(job) / "run.json").read_text())


def test_members_train_under_their_hydra_job_env_set(tmp_path):
    """A population trains in its members' `hydra.job.env_set`, as their jobs would run:
    here LEPTON_JAX_DATA_CACHE=off, which keeps the decoded data out of the cache folder."""
    tiny = ["data.limit=300", "trainer.epochs=1", "trainer.batch_size=50", "seed=0,1",
            "hydra/launcher=pool", "hydra.launcher.vectorize=true", "hydra.launcher.slots=1"]
    cache = tmp_path / "cache"
    env = {"LEPTON_JAX_CACHE_DIR": str(cache / "xla")}
    kept = run_cli("-m", *tiny, f"hydra.sweep.dir={tmp_path / 'kept'}", cwd=tmp_path, env=env)
    assert kept.returncode == 0, kept.stderr
    assert [p.name for p in cache.glob("*") if p.name != "xla"]  # the data cache is written
    shutil.rmtree(cache)
    off = run_cli("-m", *tiny, "+hydra.job.env_set.LEPTON_JAX_DATA_CACHE=off",
                  f"hydra.sweep.dir={tmp_path / 'off'}", cwd=tmp_path, env=env)
    assert off.returncode == 0, off.stderr
    assert "launching 2 jobs as 1 population" in off.stdout
    assert [p.name for p in cache.glob("*") if p.name != "xla"] == []
    # One process has one environment: members whose env_set differs are refused.
    per_job = run_cli("-m", *tiny, "+hydra.job.env_set.MEMBER=${hydra.job.num}",
                      f"hydra.sweep.dir={tmp_path / 'per_job'}", cwd=tmp_path, env=env)
    assert per_job.returncode != 0
    said = per_job.stdout + per_job.stderr
    assert "hydra.job.env_set.MEMBER differs between population members ('0' for job 0, " \
        "'1' for job 1)" in said, said
    assert "Traceback" not in said


def test_interrupted_vectorized_sweep_resumes(tmp_path):
    args = [*SMALL, "trainer.epochs=12", "trainer.checkpoint_every_steps=10", "optim.lr=0.02,0.05",
            "seed=0,1", "hydra/launcher=pool", "hydra.launcher.vectorize=true",
            "hydra.launcher.slots=1", "trainer.progress=plain"]
    reference = run_cli("-m", *args, f"hydra.sweep.dir={tmp_path / 'ref'}", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    sweep = tmp_path / "sweep"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)
    cmd = [sys.executable, "-m", "lepton_jax.train", "-m", *args, f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = sweep / "3" / "checkpoints"
    wait_for(lambda: ckpt.exists() and any(p.name.isdigit() and int(p.name) >= 20
                                           for p in ckpt.iterdir()), 120, "a mid-run checkpoint")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not (sweep / "0" / "result.json").exists()  # stopped mid-training
    resumed = run_cli("-m", *args, f"hydra.sweep.dir={sweep}", "hydra.launcher.resume=true",
                      cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed_from" in (sweep / "0" / "result.json").read_text()
    assert json.loads((sweep / "0" / "result.json").read_text())["resumed_from"] >= 20
    for job in range(4):
        _assert_same_job(sweep / str(job), tmp_path / "ref" / str(job))
    assert list(summary(sweep).status) == ["COMPLETED"] * 4


def test_grouping_keys_match_the_library():
    from hydra_plugins.lepton_pool._vectorize import VECTORIZABLE, populations

    from lepton_jax import population

    assert VECTORIZABLE == population.VECTORIZABLE
    jobs = [(i, [f"model={m}", f"optim.lr={lr}", f"+seed={s}"])
            for i, (m, lr, s) in enumerate((m, lr, s) for m in ("mlp", "lenet5")
                                           for lr in (0.1, 0.2, 0.3) for s in (0, 1))]
    groups = populations(jobs, max_population=0, slots=1)
    assert [[num for num, _ in g] for g in groups] == [list(range(6)), list(range(6, 12))]
    assert [len(g) for g in populations(jobs, max_population=4, slots=1)] == [4, 2, 4, 2]
    assert [len(g) for g in populations(jobs[:6], max_population=0, slots=4)] == [2, 2, 1, 1]
    warmups = [(i, ["optim.schedule=warmup_cosine", f"optim.warmup_epochs={w}"])
               for i, w in enumerate((0, 0.5, 1))]
    assert [len(g) for g in populations(warmups, max_population=0, slots=1)] == [3]
