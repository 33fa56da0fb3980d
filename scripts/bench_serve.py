"""Load client for `lepton-jax serve`: N sequential POST /predict over keep-alive, 127.0.0.1 only.

    python scripts/bench_serve.py --url http://127.0.0.1:8000 --n 2000 [--token T] [--rows 4]

Prints one JSON line: requests, errors, requests/s, p50/p99 latency (ms).
"""

from __future__ import annotations

import argparse
import json
import time
from urllib.parse import urlparse

import httpx
import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--token", default=None)
    args = p.parse_args()
    host = urlparse(args.url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load-test {host}: loopback addresses only")
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    # trust_env=False: never route loopback traffic through a proxy from the environment.
    with httpx.Client(base_url=args.url, headers=headers, timeout=10.0, trust_env=False) as client:
        features = client.get("/health").json()["features"]
        rng = np.random.default_rng(0)
        latencies, errors = [], 0
        start = time.perf_counter()
        for _ in range(args.n):
            rows = rng.normal(size=(args.rows, features)).round(4).tolist()
            t0 = time.perf_counter()
            r = client.post("/predict", json={"rows": rows})
            latencies.append(time.perf_counter() - t0)
            errors += r.status_code != 200 or len(r.json().get("predictions", [])) != args.rows
        wall = time.perf_counter() - start
    lat = np.asarray(latencies) * 1e3
    print(json.dumps({"requests": args.n, "errors": int(errors), "rows_per_request": args.rows,
                      "requests_per_s": round(args.n / wall, 1),
                      "p50_ms": round(float(np.percentile(lat, 50)), 3),
                      "p99_ms": round(float(np.percentile(lat, 99)), 3)}))


if __name__ == "__main__":
    main()
