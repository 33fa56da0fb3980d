"""Hydra entry point: `python -m lepton_jax.train [overrides]`."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lepton_jax.errors import UserError
from lepton_jax.hydra_app import fail, register_configs, to_config

register_configs()


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
        if hydra_cfg.mode == RunMode.MULTIRUN:
            raise  # the launcher records the failed job; the sweep goes on
        fail(str(e))
    finally:  # later runs in this process (a notebook after sweep()) write no train.log
        log_run_lines(False)
    return result["monitor"]


if __name__ == "__main__":
    main()
