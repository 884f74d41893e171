"""Open-loop load on a served recommender: top-10 for random users at a fixed request rate.

Unlike ``tensorfab perf`` (closed loop: a client waits for its answer), requests leave on a
fixed schedule whatever the answers do, and latency counts from the scheduled send time, so
a server that falls behind shows it. The client is plain asyncio streams over keep-alive
HTTP/1.1 connections (uvloop when installed): an httpx client took 3.05 s of CPU for 500
requests (this one 0.31 s, both with start-up), so on a 2-core machine it, not the
server, set the pace (40 of 100 requests/s sent).
Usage:

    python examples/movielens-100k-openloop.py http://127.0.0.1:8000 movielens-100k-bpr \\
        --rate 200 --seconds 10 --users 943
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from urllib.parse import urlsplit

import numpy as np


class Connections:
    """Keep-alive connections to one host; a request takes a free one or opens another."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.free: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes) -> int:
        """POST ``body``; the answer's status (0 when the connection failed)."""
        conn = self.free.pop() if self.free else await asyncio.open_connection(self.host, self.port)
        reader, writer = conn
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        try:
            header = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return 0
        lines = header.decode("latin-1").split("\r\n")
        fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        length = {k.strip().lower(): v.strip() for k, v in fields.items()}.get("content-length")
        await reader.readexactly(int(length or 0))
        self.free.append(conn)
        return int(lines[0].split()[1])

    def close(self) -> None:
        for _, writer in self.free:
            writer.close()


async def run(url: str, rate: float, seconds: float, users: list[str]) -> dict:
    n = int(rate * seconds)
    picks = np.random.default_rng(0).integers(0, len(users), n)
    bodies = [json.dumps({"instances": [{"user": users[p], "top_k": 10}]}).encode() for p in picks]
    parts = urlsplit(url)
    http = Connections(parts.hostname or "127.0.0.1", parts.port or 80)
    latencies: list[float] = []
    failed = 0

    async def one(i: int, due: float) -> None:
        nonlocal failed
        if await http.post(parts.path, bodies[i]) != 200:
            failed += 1
        latencies.append(time.perf_counter() - due)

    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    tasks = []
    for i in range(n):
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    http.close()
    ms = np.array(latencies) * 1000
    return {
        "requests": n,
        "failed": failed,
        "offered_rps": rate,
        "achieved_rps": round(n / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before, after
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server")
    parser.add_argument("model")
    parser.add_argument("--rate", type=float, default=200.0, help="requests/s (default 200)")
    parser.add_argument("--seconds", type=float, default=10.0, help="schedule length (default 10)")
    parser.add_argument("--users", type=int, default=943, help="user ids 1..N (default 943)")
    args = parser.parse_args()
    url = f"{args.server}/v1/models/{args.model}:predict"
    users = [str(u) for u in range(1, args.users + 1)]
    runner = asyncio.run
    try:  # optional: a cheaper event loop (uvicorn[standard] installs it)
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    print(json.dumps(runner(run(url, args.rate, args.seconds, users)), indent=2))


if __name__ == "__main__":
    main()
