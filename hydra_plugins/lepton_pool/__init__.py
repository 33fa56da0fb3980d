"""lepton_jax's pool launcher for Hydra: `hydra/launcher=pool`."""

__version__ = "0.1.0"
