"""Open-loop load on a served recommender: top-10 for random users at a fixed request rate.

Unlike ``tensorfab perf`` (closed loop: a client waits for its answer), requests leave on a
fixed schedule whatever the answers do, and latency counts from the scheduled send time, so
a server that falls behind shows it. Usage:

    python examples/movielens-100k-openloop.py http://127.0.0.1:8000 movielens-100k-bpr \\
        --rate 200 --seconds 10 --users 943
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx
import numpy as np


async def run(url: str, rate: float, seconds: float, users: list[str]) -> dict:
    n = int(rate * seconds)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(users), n)
    latencies: list[float] = []
    failed = 0
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:

        async def one(i: int, due: float) -> None:
            nonlocal failed
            body = {"instances": [{"user": users[picks[i]], "top_k": 10}]}
            answer = await http.post(url, content=json.dumps(body).encode())
            if answer.status_code != 200:
                failed += 1
            latencies.append(time.perf_counter() - due)

        start = time.perf_counter()
        tasks = []
        for i in range(n):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "requests": n,
        "failed": failed,
        "offered_rps": rate,
        "achieved_rps": round(n / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server")
    parser.add_argument("model")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=943, help="user ids 1..N")
    args = parser.parse_args()
    url = f"{args.server}/v1/models/{args.model}:predict"
    users = [str(u) for u in range(1, args.users + 1)]
    print(json.dumps(asyncio.run(run(url, args.rate, args.seconds, users)), indent=2))


if __name__ == "__main__":
    main()
