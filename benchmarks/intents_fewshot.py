"""BANKING77 few-shot (10 queries per intent) on minilm-l6: validation accuracy of the
trained run, the INT8 export's accuracy delta and the served p50 per query, in one JSON.

Run after the training (the command is recorded in the result):

    nice -n 10 tensorfab train examples/banking77-minilm.yaml --name banking77-fewshot \\
        --set data.per_class_limit=10 --set train.epochs=4 --set data.batch_size=16 \\
        --set train.lr=0.0003 --set train.warmup_steps=20 --set train.device=cpu
    nice -n 10 python benchmarks/intents_fewshot.py runs/banking77-fewshot \\
        --out benchmarks/results/cpu-2026-11-30-banking77-fewshot.json

Export parity runs on the whole validation split; the server binds 127.0.0.1, one client
sends ``--requests`` single-query requests, and the server is stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

from tensorfab.files import atomic_path

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "tensorfab.cli.main"]


def _json(args: list[str]) -> Any:
    """The command's JSON; export exits 1 with its report when a variant fails parity."""
    done = subprocess.run([*CLI, *args, "--json"], capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        raise SystemExit(f"error: tensorfab {' '.join(args)} failed: {done.stderr.strip()[-400:]}")
    return json.loads(done.stdout)


def _wait_ready(url: str, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(1.0)
    raise SystemExit(f"error: the server at {url} was not ready within {seconds:.0f} s")


def served_p50(repo: Path, models: list[str], texts: Path, requests: int, port: int) -> dict:
    """Per model: p50/p99 of single-query requests from one client to a local server."""
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*CLI, "serve", str(repo), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(url, 180.0)
        timed = {}
        for model in models:
            args = ["perf", url, "--model", model, "--texts", str(texts), "--clients", "1"]
            timed[model] = _json([*args, "--requests", str(requests), "--max-seconds", "120"])
        return timed
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the trained run directory")
    parser.add_argument("--out", required=True, help="result JSON")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--port", type=int, default=8093)
    args = parser.parse_args()
    run = Path(args.run)
    report = json.loads((run / "report.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        export = _json(
            [
                "export", str(run), "--repo", str(repo), "--name", "banking",
                "--variants", "fp32,int8-dynamic", "--samples", "100000",
            ]
        )  # fmt: skip
        texts = Path(tmp) / "queries.txt"
        lines = (REPO.parent / "shared/data/banking77/train.csv").read_text().splitlines()
        texts.write_text("\n".join(line.rsplit(",", 1)[0].strip('"') for line in lines[1:301]))
        models = ["banking", "banking-int8-dynamic"]
        perf = served_p50(repo, models, texts, args.requests, args.port)
    result = {
        "what": "BANKING77 few-shot (data.per_class_limit 10), minilm-l6: accuracy on the "
        "validation part carved from train (seed 0), INT8-dynamic export delta, served p50",
        "date": date.today().isoformat(),
        "device": report["hardware"],
        "load_average_at_end": os.getloadavg(),
        "spec": report["spec"],
        "command": "see benchmarks/intents_fewshot.py (train, then this script)",
        "history": report.get("history"),
        "validation": {k: report["metrics"]["test"].get(k) for k in ("accuracy", "macro_f1")},
        "throughput": {k: report["throughput"].get(k) for k in ("train_samples_per_s",)},
        "export": {k: export[k] for k in ("variants", "samples") if k in export} or export,
        "served": perf,
    }
    with atomic_path(Path(args.out)) as tmp_out:
        Path(tmp_out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
