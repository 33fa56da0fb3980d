"""The `lepton-jax` console script: train, predict, serve."""

from __future__ import annotations

import argparse
import sys

from lepton_jax.errors import UserError, misspelt

USAGE = """usage: lepton-jax COMMAND [ARGS]   (lepton-jax --version: the versions)

commands:
  train [overrides]              train with Hydra overrides (-m for a sweep); the same as
                                 python -m lepton_jax.train, e.g. lepton-jax train model=lenet5
  predict RUN_OR_MODEL INPUT.csv [--out OUT.csv [--overwrite]] [--proba]
                                 predictions for each row of INPUT.csv (- reads stdin), to
                                 stdout or OUT.csv (an existing one only with --overwrite);
                                 --proba adds a classifier's class probabilities (p_<class>)
  serve RUN_OR_MODEL [--port P] [--host H] [--token T]
                                 HTTP server: POST /predict, GET /health (127.0.0.1 by default;
                                 --token or $LEPTON_JAX_TOKEN turns on bearer-token access)
  report SWEEP_DIR [--metric M]  results grouped over seeds (mean ± std), the best config,
                                 report.csv and PNG plots in SWEEP_DIR (a run dir: its final
                                 metrics, learning curves and confusion matrix)
"""


def _predict(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lepton-jax predict")
    p.add_argument("model", help="a model file (Model.save) or a run directory")
    p.add_argument("input", help="CSV of feature columns (a header row); - reads stdin")
    p.add_argument("--out", default="-", help="output CSV (default: stdout)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--proba", action="store_true", help="a classifier's probability of each "
                   "class, a column p_<class> each, after the prediction")
    args = p.parse_args(argv)
    import os
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from lepton_jax.api import Model, input_widths
    from lepton_jax.data.tabular import read_features

    out = None if args.out == "-" else Path(args.out)
    if out is not None:  # checked before any work, so a refusal costs nothing
        if out.exists() and out.resolve() == Path(args.input).resolve():
            raise UserError(f"--out {out} is the input CSV; write the predictions elsewhere")
        if out.is_dir():
            raise UserError(f"--out {out} is a folder; name a CSV file inside it")
        if out.exists() and not args.overwrite:
            raise UserError(f"--out {out} already exists; pass --overwrite to replace it, or "
                            "choose another path")
        if not out.parent.is_dir():
            raise UserError(f"--out {out}: the folder {out.parent} does not exist; create it "
                            "first")
    model = Model.load(args.model)
    info = model._trained()
    if args.proba and model.classes is None:
        raise UserError(f"--proba: {args.model} holds a regression model, which has no class "
                        "probabilities; drop --proba")
    features = read_features(args.input, info.get("encoding"), info.get("feature_names") or (),
                             input_widths(info))
    # With --proba the model runs once: the prediction is the most probable class.
    proba = model.predict_proba(features) if args.proba else None
    predicted = model.predict(features) if proba is None else model._most_probable(proba)
    frame = (pd.DataFrame({"prediction": predicted}) if predicted.ndim == 1  # else a column
             else pd.DataFrame(predicted, columns=[f"prediction_{i}"        # per target
                                                  for i in range(predicted.shape[1])]))
    if proba is not None:
        # At the precision of the float32 outputs they come from: float64's 17 digits
        # (0.0015294828114590555) were noise beyond the 8th.
        frame[[f"p_{c}" for c in model.classes]] = proba.astype(np.float32)
    if out is None:
        frame.to_csv(sys.stdout, index=False)
    else:
        tmp = out.with_name(out.name + ".tmp")  # a failed write leaves no half file
        frame.to_csv(tmp, index=False)
        os.replace(tmp, out)
        print(f"wrote {len(frame)} predictions to {out}", file=sys.stderr)
    return 0


def _port(text: str) -> int:
    """--port: 0 to 65535 (99999 had ended in bind()'s OverflowError traceback)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port: use 1 to 65535, or 0 for any "
                                         "free one")
    return port


def _serve(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lepton-jax serve")
    p.add_argument("model", help="a model file (Model.save) or a run directory")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default %(default)s: this machine only)")
    p.add_argument("--port", type=_port, default=8000,
                   help="default %(default)s; 0: any free port (printed)")
    p.add_argument("--token", default=None, help="bearer token (or $LEPTON_JAX_TOKEN)")
    args = p.parse_args(argv)
    from lepton_jax.serve import serve

    serve(args.model, host=args.host, port=args.port, token=args.token)
    return 0


def _report(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lepton-jax report")
    p.add_argument("sweep_dir", help="a Hydra multirun directory, a sweep() workdir, or "
                   "one run's directory")
    p.add_argument("--metric", default=None, help="column to rank a sweep by (default: the "
                   "monitored one); for one run, the validation curve to draw")
    args = p.parse_args(argv)
    from lepton_jax.report import report

    report(args.sweep_dir, metric=args.metric)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if argv[:1] in (["-V"], ["--version"]):
        from importlib.metadata import PackageNotFoundError, version

        from lepton_jax import __version__

        try:
            jax = f" (jax {version('jax')})"
        except PackageNotFoundError:
            jax = ""
        print(f"lepton_jax {__version__}{jax}")
        return 0
    if not argv:  # asked for nothing: the usage, as an error (as argparse does)
        print(f"error: a command is needed\n{USAGE}", file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    if command == "train":
        from lepton_jax import train

        sys.argv = ["lepton-jax train", *rest]
        train.run()
        return 0
    handlers = {"predict": _predict, "serve": _serve, "report": _report}
    if command not in handlers:
        valid = ["train", *handlers]
        print(f"error: unknown command {command!r}; valid: {', '.join(valid)}"
              f"{misspelt(command, valid)}\n{USAGE}", file=sys.stderr)
        return 2
    try:
        return handlers[command](rest)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: how a server is stopped; elsewhere, cut short
        if command == "serve":
            print("stopped serving", file=sys.stderr)
            return 0
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lepton-jax predict ... | head`: the reader had enough
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no flush error at exit
        return 0


if __name__ == "__main__":
    sys.exit(main())
