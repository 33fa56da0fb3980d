"""Slots: which devices each pool worker owns (GPU machines simulated by their indices)."""

import pytest
from pool_helpers import run_app, summary, write_app

from hydra_plugins.lepton_pool._slots import PoolError, make_slots


def test_auto_slots_per_gpu_and_shared_gpus():
    slots = make_slots("auto", None, 1, 1, gpus=[0, 1, 2, 3], cpus=[0, 1])
    assert [s.gpus for s in slots] == [[0], [1], [2], [3]]
    assert slots[2].env(True) == {"CUDA_VISIBLE_DEVICES": "2"}
    shared = make_slots("auto", 1, 2, 1, gpus=[0, 1], cpus=[0, 1])
    assert [s.gpus for s in shared] == [[0], [0], [1], [1]]
    assert shared[1].env(True) == {"CUDA_VISIBLE_DEVICES": "0",
                                   "XLA_PYTHON_CLIENT_MEM_FRACTION": "0.450"}
    pairs = make_slots("auto", 2, 1, 1, gpus=[0, 1, 2, 3, 4], cpus=[0])
    assert [s.gpus for s in pairs] == [[0, 1], [2, 3]]  # GPU 4 left over, never shared


def test_cpu_slots_and_counts():
    assert [s.cpus for s in make_slots("auto", None, 1, 2, gpus=[], cpus=[0, 1, 2, 3])] == \
        [[0, 1], [2, 3]]
    cpu = make_slots(2, None, 1, 1, gpus=[], cpus=[0, 1, 2, 3])
    assert [s.cpus for s in cpu] == [[0, 1], [2, 3]]
    assert cpu[0].env(False) == {"LEPTON_POOL_CPUS": "0,1", "OMP_NUM_THREADS": "2",
                                 "MKL_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    # A CPU job on a GPU machine sees no GPU rather than all of them.
    assert make_slots("auto", 0, 1, 1, gpus=[0], cpus=[0])[0].env(True)["CUDA_VISIBLE_DEVICES"] == ""
    assert [s.gpus for s in make_slots(3, None, 1, 1, gpus=[0, 1, 2, 3, 4, 5], cpus=[0])] == \
        [[0, 1], [2, 3], [4, 5]]
    # A list as Hydra hands it over from the command line (hydra.launcher.slots=[{cpus: [0]},
    # {cpus: [1]}]): an OmegaConf ListConfig, which had been refused as "must be auto, a
    # number of slots, or a list".
    from omegaconf import OmegaConf

    listed = make_slots(OmegaConf.create([{"cpus": [1]}, {"gpus": [0], "cpus": [0]}]), None, 1,
                        1, gpus=[0], cpus=[0, 1])
    assert [(s.gpus, s.cpus) for s in listed] == [([], [1]), ([0], [0])]


def test_settings_that_change_nothing_here_are_said(caplog):
    """jobs_per_gpu on a machine without GPUs, and more cores per job than there are, had
    been ignored without a word."""
    caplog.set_level("WARNING")
    assert len(make_slots("auto", None, 2, 1, gpus=[], cpus=[0, 1])) == 2
    assert "hydra.launcher.jobs_per_gpu=2 has no effect: the jobs use no GPU (0 visible)" in \
        caplog.text
    caplog.clear()
    assert [s.cpus for s in make_slots("auto", None, 1, 5, gpus=[], cpus=[0, 1])] == [[0, 1]]
    assert "hydra.launcher.cpus_per_job=5 but 2 cores are usable here: one slot of all 2" in \
        caplog.text
    caplog.clear()
    make_slots("auto", None, 2, 1, gpus=[0], cpus=[0, 1])  # shared GPU: as asked
    assert not caplog.text


@pytest.mark.parametrize("spec, gpus_per_job, message", [
    ("auto", 3, "gpus_per_job=3 but this machine has 2 GPUs visible; use at most 2"),
    ([{"gpus": [5]}], None, "slots[0] asks for GPU 5; visible GPUs: [0, 1]"),
    ([{"gpu": [0]}], None, "slots[0] must be a mapping with keys gpus, cpus, mem_fraction"),
    (0, None, "hydra.launcher.slots=0 must be at least 1"),
    ("many", None, "hydra.launcher.slots='many' must be auto, a number of slots, or a list"),
])
def test_bad_slot_settings(spec, gpus_per_job, message):
    with pytest.raises(PoolError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_slots(spec, gpus_per_job, 1, 1, gpus=[0, 1], cpus=[0, 1])


def test_jobs_see_their_slots_devices(tmp_path):
    """On a (simulated) 2-GPU machine with 2 jobs per GPU, each job's process sees exactly its
    slot's GPU and memory share."""
    app = write_app(tmp_path)
    app.write_text(app.read_text().replace(
        '    print(f"job x={x} done", flush=True)',
        '    print(f"job x={x} done", flush=True)\n'
        '    print("env", os.environ.get("CUDA_VISIBLE_DEVICES"), '
        'os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"), flush=True)'))
    sweep = tmp_path / "sweep"
    proc = run_app(app, "+x=range(0,8)", "+sleep=0.3", "hydra.launcher.jobs_per_gpu=2",
                   f"hydra.sweep.dir={sweep}", env_extra={"CUDA_VISIBLE_DEVICES": "0,1"})
    assert proc.returncode == 0, proc.stderr
    table = summary(sweep)
    assert set(table.node.str.rsplit("/", n=1).str[-1]) <= {"slot0", "slot1", "slot2", "slot3"}
    for job, node in table.node.items():
        slot = int(node.rsplit("slot", 1)[1])
        line = next(t for t in (sweep / str(job) / "stdout.log").read_text().splitlines()
                    if t.startswith("env "))
        assert line == f"env {slot // 2} 0.450"


def test_the_live_progress_line_shows_in_a_notebook_as_on_a_terminal(monkeypatch):
    """`progress=auto` drew the pool's line only when stderr is a terminal; a notebook's
    `sweep(..., launcher="pool")` (a Jupyter kernel's stderr is not one) showed nothing for
    the whole sweep. Jupyter redraws a carriage-returned line, so it gets the line too."""
    import io
    import sys
    from types import SimpleNamespace

    import lepton_jax.progress
    from hydra_plugins.lepton_pool import _core

    def live(progress: str) -> bool:
        return _core._Run(None, SimpleNamespace(progress=progress), None, None, {}, {}, 0).live

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    monkeypatch.setattr(lepton_jax.progress, "is_interactive", lambda: False)  # nor a kernel
    assert [live("auto"), live("true"), live("false")] == [False, True, False]
    monkeypatch.setattr(lepton_jax.progress, "is_interactive", lambda: True)  # a kernel
    assert [live("auto"), live("true"), live("false")] == [True, True, False]
