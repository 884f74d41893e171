"""Score ``tensorfab.audit.pii`` on the committed labelled set: precision and recall of
pattern entities (exact type and span), overall and per type.
Run: python benchmarks/pii_score.py [--errors]"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from tensorfab.audit.pii import PATTERN_TYPES, find_patterns

SET = Path(__file__).parent / "data" / "pii" / "pii-labelled.jsonl"


def score(path: Path = SET, show_errors: bool = False) -> dict[str, dict[str, float]]:
    tp, fp, fn = Counter(), Counter(), Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        gold = {(s, e, t) for s, e, t in item["entities"]}
        found = {(f.start, f.end, f.type) for f in find_patterns(item["text"])}
        tp.update(kind for _, _, kind in found & gold)
        fp.update(kind for _, _, kind in found - gold)
        fn.update(kind for _, _, kind in gold - found)
        if show_errors and found != gold:
            print(item["text"], "| missed", gold - found, "| extra", found - gold)
    rows = {t: _row(tp[t], fp[t], fn[t]) for t in PATTERN_TYPES}
    rows["all"] = _row(sum(tp.values()), sum(fp.values()), sum(fn.values()))
    return rows


def _row(tp: int, fp: int, fn: int) -> dict[str, float]:
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }


if __name__ == "__main__":
    print(json.dumps(score(show_errors="--errors" in sys.argv), indent=1))
