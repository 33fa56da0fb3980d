"""Load client for `lepton-jax serve`: N sequential POST /predict over keep-alive, 127.0.0.1 only.

    python scripts/bench_serve.py --url http://127.0.0.1:8000 --n 2000 [--token T] [--rows 4]

Prints one JSON line: requests, errors, requests/s, p50/p99 latency (ms); exits 1 naming the
first failed request's answer when any failed. Rows hold values in [0, 1), valid for any model
(an image model's pixels must lie there).
"""

from __future__ import annotations

import argparse
import json
import time
from urllib.parse import urlparse

import httpx
import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8000",
                   help="the server to load (loopback only; default %(default)s)")
    p.add_argument("--n", type=int, default=2000, help="requests, one after another")
    p.add_argument("--rows", type=int, default=4, help="rows of random features per request")
    p.add_argument("--token", default=None, help="the server's bearer token, if it has one")
    args = p.parse_args()
    host = urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load-test {host}: loopback addresses only")
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    # trust_env=False: never route loopback traffic through a proxy from the environment.
    with httpx.Client(base_url=args.url, headers=headers, timeout=10.0, trust_env=False) as client:
        health = client.get("/health")
        if health.status_code != 200:
            raise SystemExit(f"GET /health answered HTTP {health.status_code}: "
                             f"{health.text[:300]} (a server started with a token needs --token)")
        features = health.json()["features"]
        rng = np.random.default_rng(0)
        latencies, errors = [], 0
        start = time.perf_counter()
        first_error = None
        for _ in range(args.n):
            # Values in [0, 1): an image model's pixels must be (normal draws were refused
            # as out of range, so every request against one failed); any model takes them.
            rows = rng.uniform(size=(args.rows, features)).round(4).tolist()
            t0 = time.perf_counter()
            r = client.post("/predict", json={"rows": rows})
            latencies.append(time.perf_counter() - t0)
            failed = r.status_code != 200 or len(r.json().get("predictions", [])) != args.rows
            errors += failed
            if failed and first_error is None:
                first_error = f"HTTP {r.status_code}: {r.text[:300]}"
        wall = time.perf_counter() - start
    lat = np.asarray(latencies) * 1e3
    print(json.dumps({"requests": args.n, "errors": int(errors), "rows_per_request": args.rows,
                      "requests_per_s": round(args.n / wall, 1),
                      "p50_ms": round(float(np.percentile(lat, 50)), 3),
                      "p99_ms": round(float(np.percentile(lat, 99)), 3)}))
    if errors:
        raise SystemExit(f"{errors} of {args.n} requests failed; the first: {first_error}")


if __name__ == "__main__":
    main()
