"""The `lepton-jax` console script: `lepton-jax train [hydra overrides]`."""

from __future__ import annotations

import sys

USAGE = """usage: lepton-jax COMMAND [ARGS]

commands:
  train [overrides]   train with Hydra overrides, e.g. lepton-jax train model=lenet5 optim.lr=0.05
                      (-m for a multirun sweep; same as python -m lepton_jax.train)
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "train":
        from lepton_jax import train

        sys.argv = ["lepton-jax train", *rest]
        train.main()
        return 0
    print(f"error: unknown command {command!r}\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
