"""Hydra entry point: `python -m lepton_jax.train [overrides]`."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from lepton_jax.errors import Interrupted, UserError
from lepton_jax.hydra_app import (check_overrides, discard_refused_run, fail,
                                  register_configs, to_config)

register_configs()

_BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"  # runs jobs in this process
_POOL = "hydra_plugins.lepton_pool."  # our launcher: it words a failed job's line itself


class SweepJobError(UserError, CompactHydraException):
    """A job's user error (a bad value, a missing file) in a multirun on Hydra's basic
    launcher, or another launcher than the pool. Hydra's sweeper raises the first failed
    job's error once the batch has run, and prints this kind as its message alone instead of
    a traceback."""


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    """Trains one config in Hydra's output dir; returns the monitored metric for sweepers."""
    # Imported here, not above: a multirun's launcher process never trains, and JAX is ~2 s
    # of its start-up.
    from lepton_jax.loop import fit
    from lepton_jax.writers import log_run_lines

    hydra_cfg = HydraConfig.get()
    log_run_lines(True)  # the run's lines also go to Hydra's train.log
    try:
        result = fit(to_config(cfg), hydra_cfg.runtime.output_dir)
    except UserError as e:
        if hydra_cfg.mode != RunMode.MULTIRUN:
            discard_refused_run()
            fail(str(e))
        if hydra_cfg.launcher._target_.startswith(_POOL):
            raise  # the pool records the failed job, shows its line and goes on
        raise SweepJobError(f"error: {e}") from None  # the launcher records the failed job
    except KeyboardInterrupt as e:
        if hydra_cfg.mode == RunMode.MULTIRUN and hydra_cfg.launcher._target_ != _BASIC:
            raise  # a launcher of worker processes (the pool) stops the sweep and says how
        lost = "" if isinstance(e, Interrupted) else \
            " (what it trained since its last checkpoint is lost)"
        print(f"interrupted{lost}; to resume: {resume_command(hydra_cfg)}", file=sys.stderr,
              flush=True)
        raise SystemExit(130) from None
    finally:  # later runs in this process (a notebook after sweep()) write no train.log
        log_run_lines(False)
    return result["monitor"]


def resume_command(hydra_cfg) -> str:
    """This command line pointed at its run dir (a default run dir is a new timestamped folder
    on every start), or for a sweep on Hydra's basic launcher at its sweep dir: its jobs run
    again into their job dirs, where a finished one only evaluates its final checkpoint."""
    program = sys.argv[0] if sys.argv[0] == "lepton-jax train" else "python -m lepton_jax.train"
    if hydra_cfg.mode == RunMode.MULTIRUN:
        key, folder = "hydra.sweep.dir", Path(hydra_cfg.sweep.dir).absolute()
    else:
        key, folder = "hydra.run.dir", hydra_cfg.runtime.output_dir
    args = [a for a in sys.argv[1:] if not a.startswith(key + "=")] + [f"{key}={folder}"]
    return " ".join([program, *map(shlex.quote, args)])


def run() -> None:
    """The command line: its overrides checked (`check_overrides`), then Hydra's `main`.

    Hydra ends every error it reports with "Set the environment variable HYDRA_FULL_ERROR=1
    for a complete stack trace", also after a failed job's one-line message (a compact
    error, which has no stack trace worth reading). Such errors are said here instead, with
    HYDRA_FULL_ERROR set so that Hydra hands them over; an unexpected exception keeps its
    whole traceback. A user who set HYDRA_FULL_ERROR gets Hydra's behaviour."""
    check_overrides(sys.argv[1:])
    if os.environ.get("HYDRA_FULL_ERROR"):
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except CompactHydraException as e:
        print(e, file=sys.stderr, flush=True)
        if isinstance(e.__cause__, OmegaConfBaseException):  # as Hydra prints it
            print(e.__cause__, file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    finally:
        os.environ.pop("HYDRA_FULL_ERROR", None)


if __name__ == "__main__":
    run()
