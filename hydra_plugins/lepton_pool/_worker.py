"""A pool worker process: owns one slot's devices and runs the jobs it is sent, one at a time.

Started by `_local.LocalPool` as `python -c` with the launcher's sys.path; talks over a
socket pair inherited as file descriptor `fd`.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from multiprocessing.connection import Connection

import cloudpickle

# SIGINT from the launcher (Ctrl-C on the sweep) stops a job only while its task runs. Once
# the task has returned, the job is finished: the signal is ignored so that its result still
# reaches the launcher, and resume does not run it a second time.
_in_task = False


def _on_sigint(signum, frame) -> None:
    if _in_task:
        raise KeyboardInterrupt


def _guarded(task):
    def run(cfg):
        global _in_task
        _in_task = True
        try:
            return task(cfg)
        finally:
            _in_task = False

    return run


def main(fd: int) -> None:
    signal.signal(signal.SIGINT, _on_sigint)
    conn = Connection(fd)
    cpus = os.environ.get("LEPTON_POOL_CPUS")
    if cpus and hasattr(os, "sched_setaffinity"):
        # The slot's thread budget: XLA, BLAS and OpenMP size their pools from the affinity.
        os.sched_setaffinity(0, [int(c) for c in cpus.split(",")])
    from hydra_plugins.lepton_pool import _job

    ctx = cloudpickle.loads(conn.recv_bytes())
    ctx.task_function = _guarded(ctx.task_function)
    _job.enter(ctx)
    while True:
        try:
            message = cloudpickle.loads(conn.recv_bytes())
        except EOFError:  # the launcher went away
            return
        kind, payload = message
        if kind == "stop":
            return
        try:
            if kind == "job":
                outcomes = [_job.run_one(ctx, *payload)]
            else:  # a population runs its members' training directly, as one task
                outcomes = _guarded(lambda jobs: _job.run_population(ctx, jobs))(payload)
            conn.send_bytes(cloudpickle.dumps(("ok", outcomes)))
        except BaseException as e:  # noqa: B036 - a launcher-side failure, sent back whole
            if isinstance(e, Exception) and _job.out_of_memory(e):  # a population's
                conn.send_bytes(cloudpickle.dumps(("fault", f"out of memory ({type(e).__name__})")))
                continue
            conn.send_bytes(cloudpickle.dumps(("error", "".join(traceback.format_exception(e)))))
            if not isinstance(e, Exception):
                raise


if __name__ == "__main__":
    main(int(sys.argv[1]))
