"""Grouping sweep jobs into populations (`hydra.launcher.vectorize=true`)."""

from __future__ import annotations

import math

# Config keys that enter lepton_jax's train step as arrays (lepton_jax.population.VECTORIZABLE;
# kept here so that grouping needs neither JAX nor a config composition per job).
VECTORIZABLE = ("optim.lr", "optim.momentum", "optim.weight_decay", "optim.warmup_epochs",
                "seed")


def _structural(overrides: list[str]) -> tuple:
    """The overrides that can change shapes or programs: all but the vectorizable keys.

    Every job of a sweep composes from the same primary config, so jobs with equal
    structural overrides have equal structural configs.
    """
    kept = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key not in VECTORIZABLE:
            kept.append(override)
    return tuple(sorted(kept))


def populations(todo: list, max_population: int, slots: int) -> list[list]:
    """`todo` ([(num, overrides)]) split into groups that differ only in vectorizable keys.

    Groups larger than `max_population` are split; with fewer groups than slots (and no
    max_population given) groups are split evenly so that every slot gets a population.
    """
    by_key: dict[tuple, list] = {}
    for job in todo:
        by_key.setdefault(_structural(job[1]), []).append(job)
    groups = []
    for members in by_key.values():
        size = max_population or len(members)
        groups.extend(members[i:i + size] for i in range(0, len(members), size))
    if not max_population and len(groups) < slots:
        parts = math.ceil(slots / len(groups))
        groups = [group[k::parts] for group in groups for k in range(min(parts, len(group)))]
    return groups
