"""One process of the two-process CPU test: 2 local devices each, gloo collectives on loopback."""

import os
import sys

import jax

# 2 devices per process in the two-process run; 4 in the one-process reference run.
jax.config.update("jax_num_cpu_devices", 4 // int(os.environ.get("JAX_NUM_PROCESSES", "1")))
jax.config.update("jax_cpu_collectives_implementation", "gloo")

import numpy as np  # noqa: E402

from lepton_jax import Config, DataConfig, ModelConfig, TrainerConfig  # noqa: E402
from lepton_jax.loop import fit_with_state  # noqa: E402
from lepton_jax.parallel import to_host  # noqa: E402

workdir, out, strategy = sys.argv[1], sys.argv[2], sys.argv[3]
config = Config(model=ModelConfig(hidden=[32]), data=DataConfig(name="digits"),
                trainer=TrainerConfig(epochs=2, batch_size=64, progress="off", parallel=strategy,
                                      compilation_cache="off"))
result, state = fit_with_state(config, workdir)
assert jax.process_count() == int(os.environ.get("JAX_NUM_PROCESSES", "1"))
assert len(jax.devices()) == 4, jax.devices()
leaves = [to_host(x) for x in jax.tree.leaves(state.params)]
np.savez(out, *leaves, val_loss=np.float64(result["val"]["loss"]))
