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
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, StrictFloat, StrictInt

    info = model._trained()
    features = 1
    for d in info["input_shape"]:
        features *= int(d)
    # The raw columns a row may name: a CSV's (categorical ones as their values), or a
    # DataFrame's. Image and unnamed-array models have none.
    named = list((info.get("encoding") or {}).get("columns") or info.get("feature_names") or [])

    class PredictRequest(BaseModel):
        # A misspelt field ("probabilites") is refused, not ignored.
        model_config = ConfigDict(extra="forbid")

        # A row: the model's features as numbers, in order; or an object of its columns by
        # name (a categorical column's value as its category, e.g. "Paris").
        # (Strict numbers in a list row: pydantic took true as 1.0 and "2" as 2.0.)
        rows: List[Union[List[Union[StrictFloat, StrictInt]],
                         Dict[str, Union[float, int, str, bool]]]]
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

    @app.exception_handler(RequestValidationError)
    def malformed(request: Request, exc: RequestValidationError) -> JSONResponse:
        # One sentence, as the other 4xx answers give, instead of pydantic's error list.
        status, detail = request_error(request.headers.get("content-type", ""), exc.errors(),
                                       exc.body)
        return JSONResponse(status_code=status, content={"detail": detail})

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
                count = len(body.rows[bad])
                raise HTTPException(status_code=422, detail=f"row {bad} has {count} "
                                    f"value{'s' * (count != 1)}; the model takes "
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


EXAMPLE = '{"rows": [[0.1, 2.0, 3.5]]}'


def request_error(content_type: str, errors: list, body) -> tuple:
    """The status and one-line message for a /predict body the request model refused
    (`errors`: pydantic's, for `body`, the parsed JSON)."""
    if "json" not in content_type.lower():
        # curl -d sends form encoding, which the body is then read as.
        return 415, (f"the body must be JSON, sent with the header content-type: "
                     f"application/json (curl: -H 'content-type: application/json'), "
                     f"e.g. {EXAMPLE}")
    error = errors[0]
    kind, loc = error["type"], list(error["loc"][1:])  # loc[0] is "body"
    if kind == "json_invalid":
        reason = (error.get("ctx") or {}).get("error", "")
        return 422, f"the body is not valid JSON ({reason}); send e.g. {EXAMPLE}"
    if not loc:
        return 422, f"the body must be a JSON object with rows, e.g. {EXAMPLE}"
    field = loc[0]
    if kind == "missing":
        return 422, f"the body has no {field}; send e.g. {EXAMPLE}"
    if kind == "extra_forbidden":
        return 422, (f"the body's field {field!r} is not known; it takes rows (and "
                     "probabilities: true for a classifier's class probabilities)")
    if field == "probabilities":
        return 422, f"probabilities is {_json(error['input'])}; send true or false"
    rows = body.get("rows") if isinstance(body, dict) else None
    if len(loc) == 1 or not isinstance(rows, list):
        return 422, ("rows must be a list of rows, each a list of numbers or an object of "
                     f"columns by name, e.g. {EXAMPLE}")
    i = loc[1]
    row = rows[i]
    if isinstance(row, list):
        j = next((j for j, v in enumerate(row)
                  if isinstance(v, bool) or not isinstance(v, (int, float))), None)
        if j is not None:
            return 422, f"rows[{i}][{j}] is {_json(row[j])}; a list row holds numbers"
    elif isinstance(row, dict):
        key = next((k for k, v in row.items() if not isinstance(v, (int, float, str, bool))),
                   None)
        if key is not None:
            return 422, (f"rows[{i}][{_json(key)}] is {_json(row[key])}; a column's value "
                         "is a number, or a category's name")
    return 422, (f"rows[{i}] is {_json(row)}; a row is a list of numbers or an object of "
                 "columns by name")


def _json(value) -> str:
    """A value of the request as JSON writes it (null, not None), cut short if long."""
    import json

    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
