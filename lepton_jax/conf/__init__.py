"""Hydra configs shipped with the package (YAML values; schemas live in lepton_jax.config)."""
