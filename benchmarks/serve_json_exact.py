"""What checking JSON integer tensors exactly costs: ``np.asarray(data, dtype)`` (the old,
truncating conversion) against ``protocol.json_values`` (refuses 1.9, "1", true) and the
whole request parse, for a text row, a text batch, a digit and a batch of digits.

Run: python benchmarks/serve_json_exact.py [--out FILE.json]   (best of 5, microseconds)
"""

from __future__ import annotations

import argparse
import json
import timeit
from pathlib import Path

import numpy as np

from tensorfab.files import write_text_atomic
from tensorfab.serve.protocol import DATATYPES, json_values, parse_infer_request

CASES = [("INT64", [1, 128]), ("INT64", [64, 128]), ("UINT8", [1, 1, 28, 28]),
         ("UINT8", [64, 1, 28, 28])]  # fmt: skip


def _best_us(call: object, number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]


def measure(datatype: str, shape: list[int]) -> dict[str, object]:
    """The three timings of one request shape."""
    data = [i % 200 for i in range(int(np.prod(shape)))]
    tensor = {"name": "x", "shape": shape, "datatype": datatype, "data": data}
    body = json.dumps({"inputs": [tensor]}).encode()
    number = 2000 if shape[0] == 1 else 200
    return {
        "datatype": datatype,
        "shape": shape,
        "asarray_us": _best_us(lambda: np.asarray(data, dtype=DATATYPES[datatype]), number),
        "json_values_us": _best_us(lambda: json_values("x", datatype, data), number),
        "parse_us": _best_us(lambda: parse_infer_request(body), number),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    load = Path("/proc/loadavg").read_text().split()[0]
    rows = [measure(d, s) for d, s in CASES]
    print(f"1-minute load average before: {load}")
    for row in rows:
        print(
            f"{row['datatype']} {row['shape']}: asarray {row['asarray_us']:.1f} us, "
            f"json_values {row['json_values_us']:.1f} us, whole parse {row['parse_us']:.1f} us"
        )
    if args.out:
        result = {"load_1min_before": float(load), "device": "2-core CPU, shared", "rows": rows}
        write_text_atomic(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
