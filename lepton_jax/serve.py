"""`lepton-jax serve`: a FastAPI app answering POST /predict and GET /health for one model.

No `from __future__ import annotations` here: FastAPI reads the endpoint annotations at
definition time, and the request model is defined inside `create_app`.
"""


import os
import secrets
import sys
from typing import Dict, List, Optional, Union

from lepton_jax.api import Model
from lepton_jax.errors import UserError

TOKEN_ENV = "LEPTON_JAX_TOKEN"


def create_app(model: Model, token: Optional[str] = None):
    """The app; with `token`, every request needs `Authorization: Bearer <token>` (else 401)."""
    from fastapi import Depends, FastAPI, HTTPException, Request
    from pydantic import BaseModel

    info = model._trained()
    features = 1
    for d in info["input_shape"]:
        features *= int(d)
    # The raw columns a row may name: a CSV's (categorical ones as their values), or a
    # DataFrame's. Image and unnamed-array models have none.
    named = list((info.get("encoding") or {}).get("columns") or info.get("feature_names") or [])

    class PredictRequest(BaseModel):
        # A row: the model's features as numbers, in order; or an object of its columns by
        # name (a categorical column's value as its category, e.g. "Paris").
        rows: List[Union[List[Union[float, int]], Dict[str, Union[float, int, str, bool]]]]
        # A classifier's probability of each class as well (in /health's `classes` order).
        probabilities: bool = False

    def authorize(request: Request) -> None:
        if token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        # Constant-time compare; the token itself is never logged or echoed.
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.encode(), token.encode()):
            raise HTTPException(status_code=401, detail="missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    app = FastAPI(title="lepton_jax model server", dependencies=[Depends(authorize)])

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": model.config.name, "task": info["task"],
                "features": features, "columns": named, "classes": model.classes}

    @app.post("/predict")
    def predict(body: PredictRequest) -> dict:
        if not body.rows:
            raise HTTPException(status_code=422, detail="rows is empty; send at least one row")
        if body.probabilities and model.classes is None:
            raise HTTPException(status_code=422, detail="probabilities: this model does "
                                "regression, which has none; drop the field")
        objects = [isinstance(r, dict) for r in body.rows]
        if any(objects):
            if not all(objects):
                raise HTTPException(status_code=422, detail="rows mix lists and objects; send "
                                    "every row the same way")
            if not named:
                raise HTTPException(status_code=422, detail="this model's features have no "
                                    f"names; send each row as a list of {features} numbers")
            import pandas as pd

            rows = pd.DataFrame(body.rows)  # picked (and encoded) by name in predict
            rows.attrs["source"] = "rows"
        else:
            bad = next((i for i, r in enumerate(body.rows) if len(r) != features), None)
            if bad is not None:
                raise HTTPException(status_code=422, detail=f"row {bad} has "
                                    f"{len(body.rows[bad])} values; the model takes "
                                    f"{features} features per row")
            rows = body.rows
        try:
            if not body.probabilities:
                return {"predictions": model.predict(rows).tolist()}
            proba = model.predict_proba(rows)  # one run of the model for both answers
        except UserError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        return {"predictions": model._most_probable(proba).tolist(),
                "probabilities": proba.tolist(), "classes": model.classes}

    return app


def serve(path: str, host: str = "127.0.0.1", port: int = 8000,
          token: Optional[str] = None) -> None:
    """Loads a model file or run directory and serves it until interrupted."""
    import uvicorn

    token = token or os.environ.get(TOKEN_ENV) or None
    model = Model.load(path)
    app = create_app(model, token)
    model.predict(_zeros(model))  # compile before the first request
    sock = _listen(host, port)  # bound here: a taken port is one clear error, not uvicorn's
    port = sock.getsockname()[1]  # the one the system chose for --port 0
    print(f"serving {path} on http://{host}:{port} (POST /predict, GET /health)"
          f"{' with bearer-token access control' if token else ''}", flush=True)
    exposed = open_to_others(host, token)
    if exposed:
        print(exposed, file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


def open_to_others(host: str, token: Optional[str]) -> str:
    """A warning when the server listens beyond this machine without a token: on --host
    0.0.0.0 anyone who reaches the port could query the model."""
    import ipaddress

    if token or host == "localhost":
        return ""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return ""
    except ValueError:
        pass  # a host name: it may resolve to an outside address
    return (f"warning: --host {host} without a token: anyone who can reach this port can query "
            f"the model; set --token or ${TOKEN_ENV} to require one")


def _listen(host: str, port: int):
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except socket.gaierror as e:
        raise UserError(f"--host {host!r} is not an address this machine knows ({e.strerror}); "
                        "use 127.0.0.1 (the default) or one of its own addresses") from None
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror}; pick another port with "
                        "--port (0 lets the system choose) or stop what is using it") from None


def _zeros(model: Model):
    import numpy as np

    shape = model._trained()["input_shape"]
    return np.zeros((1, int(np.prod(shape))), np.float32)
