"""The `lepton-jax` console script: train, predict, serve."""

from __future__ import annotations

import argparse
import sys

from lepton_jax.errors import UserError

USAGE = """usage: lepton-jax COMMAND [ARGS]

commands:
  train [overrides]              train with Hydra overrides (-m for a sweep); the same as
                                 python -m lepton_jax.train, e.g. lepton-jax train model=lenet5
  predict RUN_OR_MODEL INPUT.csv [--out OUT.csv]
                                 predictions for each row of INPUT.csv (stdout by default)
  serve RUN_OR_MODEL [--port P] [--host H] [--token T]
                                 HTTP server: POST /predict, GET /health (127.0.0.1 by default;
                                 --token or $LEPTON_JAX_TOKEN turns on bearer-token access)
  report SWEEP_DIR [--metric M]  results grouped over seeds (mean ± std), the best config,
                                 report.csv and PNG plots in SWEEP_DIR (a run dir: its final
                                 metrics and learning curves)
"""


def _predict(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lepton-jax predict")
    p.add_argument("model", help="a model file (Model.save) or a run directory")
    p.add_argument("input", help="CSV of feature columns (a header row)")
    p.add_argument("--out", default="-", help="output CSV (default: stdout)")
    args = p.parse_args(argv)
    import pandas as pd

    from lepton_jax.api import Model
    from lepton_jax.data.tabular import read_features

    model = Model.load(args.model)
    features = read_features(args.input, model._trained().get("encoding"))
    frame = pd.DataFrame({"prediction": model.predict(features)})
    if args.out == "-":
        frame.to_csv(sys.stdout, index=False)
    else:
        frame.to_csv(args.out, index=False)
        print(f"wrote {len(frame)} predictions to {args.out}", file=sys.stderr)
    return 0


def _serve(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lepton-jax serve")
    p.add_argument("model", help="a model file (Model.save) or a run directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", default=None, help="bearer token (or $LEPTON_JAX_TOKEN)")
    args = p.parse_args(argv)
    from lepton_jax.serve import serve

    serve(args.model, host=args.host, port=args.port, token=args.token)
    return 0


def _report(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lepton-jax report")
    p.add_argument("sweep_dir", help="a Hydra multirun directory, a sweep() workdir, or "
                   "one run's directory")
    p.add_argument("--metric", default=None, help="column to rank by (default: monitored)")
    args = p.parse_args(argv)
    from lepton_jax.report import report

    report(args.sweep_dir, metric=args.metric)
    return 0


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
    handlers = {"predict": _predict, "serve": _serve, "report": _report}
    if command not in handlers:
        print(f"error: unknown command {command!r}; valid: train, predict, serve, report\n{USAGE}",
              file=sys.stderr)
        return 2
    try:
        return handlers[command](rest)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
