"""The pool launcher's Ray backend on real clusters started here on 127.0.0.1."""

import json
import os
import subprocess
import sys
import threading

import pytest
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from pool_helpers import (MULTI_NODE, RAY_AUTH, SINGLE_MACHINE, free_port, kill_node, ray_add_node,
                          ray_start_head, ray_stop, run_app, runs, summary, wait_for, write_app)

pytestmark = pytest.mark.slow
# Drivers in this process and in the sweeps it starts present the clusters' token, and run in
# the single-machine (127.0.0.1 only) mode of the clusters they join, unless a test says otherwise.
os.environ.update({**RAY_AUTH, **SINGLE_MACHINE})


@pytest.fixture(scope="module")
def cluster():
    """A one-node cluster for Hydra's suites; the test module stops it."""
    ray_stop()
    port = free_port()
    ray_start_head(port, num_cpus=2)
    yield f"127.0.0.1:{port}"
    import ray

    ray.shutdown()
    ray_stop()


def _ray_flags(address):
    return ["hydra.launcher.backend=ray", f"hydra.launcher.ray.address={address}"]


@pytest.fixture
def overrides(cluster):
    return _ray_flags(cluster)


@pytest.fixture
def extra_flags(cluster):
    return ["-m", *_ray_flags(cluster)]


@pytest.mark.parametrize("launcher_name", ["pool"])
class TestPoolLauncherRay(LauncherTestSuite):
    pass


@pytest.mark.parametrize("task_launcher_cfg", [
    {"defaults": [{"override hydra/launcher": "pool"}, {"override hydra/hydra_logging": "hydra_debug"},
                  {"override hydra/job_logging": "disabled"}]}])
class TestPoolLauncherRayIntegration(IntegrationTestSuite):
    pass


def test_private_instance_on_loopback_and_gpu_check(tmp_path, cluster):
    """Without an address the launcher starts its own Ray on 127.0.0.1; asking for more GPUs
    than any node has is refused before anything runs."""
    app = write_app(tmp_path)
    proc = run_app(app, "+x=0,1", "hydra.launcher.backend=ray", f"hydra.sweep.dir={tmp_path / 's'}",
                   "+progress=1", "hydra.launcher.progress=true")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = summary(tmp_path / "s")
    assert list(table.metric) == [0.0, 10.0] and all(n.startswith("127.0.0.1/") for n in table.node)
    # Ray tasks on this machine report their steps to the progress line, as local slots do.
    lines = proc.stderr.splitlines()
    assert any(" running (25%" in line for line in lines), lines
    assert any(" running (50%" in line and " · ETA " in line for line in lines), lines
    assert not list((tmp_path / "s" / ".pool").glob("unit*"))
    proc = run_app(app, "+x=0", *_ray_flags(cluster), "hydra.launcher.ray.num_gpus=1",
                   f"hydra.sweep.dir={tmp_path / 'g'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "hydra.launcher.ray.num_gpus=1 but no node of the Ray cluster has more than 0 GPUs" in proc.stderr
    assert not (tmp_path / "g" / "0").exists()


def test_populations_run_as_ray_tasks(tmp_path, cluster):
    """hydra.launcher.vectorize=true on Ray: each population is one Ray task, and its members
    report as separate jobs, as on the local pool (the same metrics)."""
    from conftest import run_cli

    common = ["-m", "model.hidden=[16]", "trainer.epochs=1", "optim.lr=0.05,0.1", "seed=0,1",
              "hydra/launcher=pool", "hydra.launcher.vectorize=true",
              "hydra.launcher.max_population=2"]
    on_ray = run_cli(*common, *_ray_flags(cluster), f"hydra.sweep.dir={tmp_path / 'ray'}",
                     cwd=tmp_path)
    assert on_ray.returncode == 0, on_ray.stdout + on_ray.stderr
    assert "launching 4 jobs as 2 populations" in on_ray.stdout
    local = run_cli(*common, f"hydra.sweep.dir={tmp_path / 'local'}", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    ray_table, local_table = summary(tmp_path / "ray"), summary(tmp_path / "local")
    assert list(ray_table.status) == ["COMPLETED"] * 4
    assert all(node.startswith("127.0.0.1/") for node in ray_table.node)
    assert list(ray_table.metric) == pytest.approx(list(local_table.metric), abs=1e-6)
    for job in range(4):
        result = json.loads((tmp_path / "ray" / str(job) / "result.json").read_text())
        assert result["strategy"] == "population" and result["population"] == 2


def test_ray_faults_timeouts_and_exceptions(tmp_path, cluster):
    """On Ray: a job that SIGKILLs its worker once is rerun by Ray, a hung job is cancelled at
    the timeout and resubmitted, an exception is reported and not retried."""
    app = write_app(tmp_path)
    sweep = tmp_path / "s"
    proc = run_app(app, "+x=0,1,2,3", "+fault1=kill_once", "+fault2=hang_once", "+fault3=raise",
                   *_ray_flags(cluster), "hydra.launcher.timeout=5", f"hydra.sweep.dir={sweep}")
    assert proc.returncode != 0
    table = summary(sweep)
    assert list(table.status) == ["COMPLETED", "COMPLETED", "COMPLETED", "FAILED"], proc.stdout
    assert all(n.startswith("127.0.0.1/") for n in table.node if n)  # loopback only
    assert list(table.attempts) == [1, 1, 2, 1]  # the kill was retried inside Ray
    assert list(table.metric) == ["0.0", "10.0", "20.0", ""]
    assert "timed out after 5 s" in proc.stdout and "boom in job x=3" in proc.stdout
    assert runs(sweep) == {"0": ["0 "], "1": ["1 "], "2": ["2 "]}


def _node_ids(port):
    code = ("import json, ray; ray.init(address='127.0.0.1:%d', log_to_driver=False); "
            "print(json.dumps({n['NodeID']: n['Resources'] for n in ray.nodes() if n['Alive']}))")
    out = subprocess.run([sys.executable, "-c", code % port], capture_output=True, text=True,
                         check=True, timeout=120, env={**os.environ, **MULTI_NODE}).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_two_nodes_and_a_lost_node(tmp_path, cluster):
    """Jobs land on both nodes of a 2-node cluster; killing one node mid-sweep reruns its
    jobs on the other, and every result is present once."""
    import ray

    ray.shutdown()  # this process was a driver of the suites' cluster
    ray_stop()
    port, worker_port = free_port(), free_port()
    ray_start_head(port, num_cpus=1, resources='{"head": 1}', mode=MULTI_NODE)
    try:
        ray_add_node(port, num_cpus=1, node_manager_port=worker_port,
                     resources='{"worker": 1}')
        nodes = _node_ids(port)
        worker = next(n for n, res in nodes.items() if "worker" in res)
        app = write_app(tmp_path)
        sweep = tmp_path / "sweep"
        result = {}
        thread = threading.Thread(target=lambda: result.update(proc=run_app(
            app, "+x=range(0,8)", "+sleep=1.5", "+ray_node=true", f"hydra.sweep.dir={sweep}",
            *_ray_flags(f"127.0.0.1:{port}"), "hydra.launcher.max_retries=3", env_extra=MULTI_NODE)))
        thread.start()

        def on_worker(finished):
            done = runs(sweep)
            return [job for job, starts in runs(sweep, "starts.txt").items() if worker in starts
                    and (job in done) == finished]

        wait_for(lambda: on_worker(finished=True), 120, "a job finished on the worker node")
        wait_for(lambda: on_worker(finished=False), 60, "a job running on the worker node")
        interrupted = on_worker(finished=False)
        assert kill_node(worker_port) > 0
        thread.join(timeout=300)
        proc = result["proc"]
        assert proc.returncode == 0, proc.stdout + proc.stderr
        table = summary(sweep)
        assert list(table.status) == ["COMPLETED"] * 8
        assert list(table.metric) == [10.0 * x for x in range(8)]
        done = runs(sweep)
        assert sorted(done) == [str(x) for x in range(8)]
        assert all(len(lines) == 1 for lines in done.values()), done  # present once
        used = {line.split()[1] for lines in done.values() for line in lines}
        assert used == set(nodes)  # both nodes ran jobs
        assert any(n.endswith(worker[:8]) for n in table.node)
        # The job running on the killed node ran again, to the end, on the head.
        for job in interrupted:
            starts = runs(sweep, "starts.txt")[job]
            assert starts[0] == worker and len(starts) == 2 and starts[1] != worker
            assert done[job][0].split()[1] == starts[1]
    finally:
        ray_stop()
