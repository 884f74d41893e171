"""The unpadded BERT forward against Hugging Face's, on the batches a server computes.

Usage (from the repository root, with the NER run ``serve_efficiency.py`` serves):

    taskset -c 0 .venv/bin/python benchmarks/serve_unpadded.py runs/srveff-ner \
        --texts ../shared/data/conll2003/valid.txt \
        --out benchmarks/results/cpu-2026-12-01-serve-unpadded.json

On the sentences' token ids, one thread, CPU ms per sentence (best of 3 passes) of the
package's graph as Hugging Face runs it and with its encoder unpadded
(``models/unpadded.py``), in two kinds of batches: sorted by length (what offline
throughput uses) and random pools (what a server takes from its queue: ``--pools`` of the
clients' requests, in arrival order), the unpadded path at several attention group counts
(``--chunks``: the constant ``CHUNKS`` is picked from this), and the fp32 ONNX export
(unpadded too) in onnxruntime at ``CHUNKS``. Also the largest difference of the PyTorch
paths' logits at the real positions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tensorfab.files import atomic_path
from tensorfab.models import unpadded as unpadded_module
from tensorfab.optimize.export import inference_graph
from tensorfab.optimize.runtime import load_runtime
from tensorfab.package import load_package, resolve_model_dir

sys.path.insert(0, str(Path(__file__).parent))
from serve_efficiency import load_average, padded, sentences, token_ids, version_dir

PASSES = 3


def cpu_ms(run: Any, feeds: list[dict], sentences_count: int) -> float:
    best = float("inf")
    for _ in range(PASSES):
        start = time.process_time()
        for feed in feeds:
            run(feed)
        best = min(best, 1e3 * (time.process_time() - start) / sentences_count)
    return round(best, 3)


def on_tensors(graph: torch.nn.Module) -> Any:
    def run(feed: dict) -> Any:
        return graph(torch.from_numpy(feed["input_ids"]), torch.from_numpy(feed["attention_mask"]))

    return run


def batches(rows: list[list[int]], args: argparse.Namespace) -> dict[str, list[dict]]:
    ordered = sorted(rows, key=len)
    arrival = rows[:]
    random.Random(0).shuffle(arrival)
    out = {f"sorted-{n}": _cut(ordered, n) for n in (16, 32)}
    out.update({f"random-{n}": _cut(arrival, n) for n in args.pools})
    return out


def _cut(rows: list[list[int]], size: int) -> list[dict]:
    return [padded(rows[i : i + size]) for i in range(0, len(rows), size)]


@torch.inference_mode()
def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    path = resolve_model_dir(args.model)
    texts = sentences(args.texts, args.sentences)
    rows = token_ids(path, texts)
    hf = inference_graph(load_package(path, torch.device("cpu")))[0].eval()
    packed = inference_graph(load_package(path, torch.device("cpu")))[0]
    unpadded_module.unpad_encoders(packed)
    packed.eval()
    onnx = load_runtime(version_dir(args.model, "fp32", tmp), "auto", "cpu", threads=1)
    feeds = batches(rows, args)
    check = feeds[f"random-{args.pools[0]}"][0]
    ids, mask = (torch.from_numpy(check[k]) for k in ("input_ids", "attention_mask"))
    kept = mask.bool()
    diff = (hf(ids, mask)[kept] - packed(ids, mask)[kept]).abs().max().item()
    results: dict[str, Any] = {}
    for name, group in feeds.items():
        row: dict[str, Any] = {"hugging_face": cpu_ms(on_tensors(hf), group, len(rows))}
        for chunks in args.chunks:
            unpadded_module.attention_chunks.__defaults__ = (chunks,)
            row[f"unpadded_chunks_{chunks}"] = cpu_ms(on_tensors(packed), group, len(rows))
        unpadded_module.attention_chunks.__defaults__ = (unpadded_module.CHUNKS,)
        row["onnx_fp32_unpadded"] = cpu_ms(onnx, group, len(rows))
        results[name] = row
        print(name, row, flush=True)
    return {"cpu_ms_per_sentence": results, "max_abs_diff_real_positions": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--texts", required=True)
    parser.add_argument("--sentences", type=int, default=600)
    parser.add_argument("--pools", type=lambda s: [int(x) for x in s.split(",")], default=[25, 8])
    parser.add_argument(
        "--chunks", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3, 4]
    )
    parser.add_argument("--out", default="benchmarks/results/serve-unpadded.json")
    args = parser.parse_args()
    load = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args, Path(tmp))
    record = {
        "benchmark": "serve_unpadded",
        "date": datetime.date.today().isoformat(),
        "device": f"cpu {platform.machine()}, one thread (pin it: taskset)",
        "command": " ".join(["benchmarks/serve_unpadded.py", *sys.argv[1:]]),
        "threads": 1,
        "sentences": args.sentences,
        "chunks_constant": unpadded_module.CHUNKS,
        "load_average": [load, load_average()],
        **result,
    }
    with atomic_path(Path(args.out)) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
