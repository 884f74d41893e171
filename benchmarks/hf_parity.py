"""``export --format hf`` against ``tensorfab predict``: the same entities on real sentences?

Usage (from the repository root, with a trained NER run or package):

    .venv/bin/python benchmarks/hf_parity.py runs/hf-parity-minilm \
        --texts ../shared/data/conll2003/valid.txt

Exports the model with ``tensorfab export MODEL --format hf`` into a temporary folder,
then gives every sentence of ``--texts`` (words joined by spaces, as people type them) to
``tensorfab predict`` (``engine.inference.predict_inputs``) and to
``transformers.pipeline("ner", aggregation_strategy="first")`` on the exported folder, and
compares their (type, start, end) entity sets sentence by sentence, and each side's with
the gold CoNLL entities (exact character spans: what a person reading the answers sees).
Sentences are also counted apart by whether the pipeline's words are the whitespace words:
WordPiece splits "U.S." or "1-0" into several pipeline words (a piece without "##" starts
one). A model trained with ``data.label_pieces: first`` labels the whole whitespace word
by its first piece, so only those sentences agree by construction; with ``all`` predict
reads the pipeline's words (docs/hf-export.md). Writes the JSON summary with the device,
date and command to ``--out`` (paths relative to the repository).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from tensorfab.data.conll import read_conll
from tensorfab.engine.inference import predict_inputs
from tensorfab.files import write_text_atomic
from tensorfab.optimize.hf import export_hf
from tensorfab.package import load_package, resolve_model_dir
from tensorfab.tasks.prediction import decode_entities, word_spans

REPO = Path(__file__).absolute().parents[1]  # not resolved: ../shared may be a link


def relative(path: str | Path) -> str:
    """``path`` relative to the repository (``../shared/...``), never a machine's path."""
    return os.path.relpath(os.path.abspath(path), REPO)


def spans(entities: list[dict], kind: str) -> set[tuple[str, int, int]]:
    return {(e[kind], int(e["start"]), int(e["end"])) for e in entities}


def gold_spans(sentence) -> set[tuple[str, int, int]]:
    """The CoNLL entities of a sentence as (type, start, end) in its words joined by spaces."""
    text = " ".join(sentence.words)
    ones = [1.0] * len(sentence.words)
    return spans(decode_entities(text, word_spans(text), sentence.tags, ones), "type")


def span_f1(found: list[set], gold: list[set]) -> float:
    """Entity F1 on exact (type, start, end) character spans."""
    hits = sum(len(f & g) for f, g in zip(found, gold, strict=True))
    total = sum(map(len, found)) + sum(map(len, gold))
    return 2 * hits / total if total else 1.0


def compare(model: str, sentences: list, hf_dir: Path, batch_size: int) -> dict:
    """Entity sets of both sides per sentence, and where the two differ."""
    from transformers import AutoTokenizer, pipeline

    texts = [" ".join(s.words) for s in sentences]
    t0 = time.perf_counter()
    ours = predict_inputs(model, texts, device="cpu")
    ours_s = time.perf_counter() - t0
    ner = pipeline("ner", model=str(hf_dir), aggregation_strategy="first", device="cpu")
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = ner(texts, batch_size=batch_size)
    theirs_s = time.perf_counter() - t0
    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    rows = []
    for text, mine, hf in zip(texts, ours, theirs, strict=True):
        words = sum(not p.startswith("##") for p in tokenizer.tokenize(text))
        a, b = spans(mine["entities"], "type"), spans(hf, "entity_group")
        rows.append({"same_words": words == len(text.split()), "ours": a, "theirs": b})
    gold = [gold_spans(s) for s in sentences]
    f1 = {
        "predict": span_f1([r["ours"] for r in rows], gold),
        "pipeline": span_f1([r["theirs"] for r in rows], gold),
    }
    timing = {"predict_s": ours_s, "pipeline_s": theirs_s}
    return summarize(rows) | {"entity_f1_vs_gold_char_spans": f1} | timing


def summarize(rows: list[dict]) -> dict:
    def part(selected: list[dict]) -> dict:
        same = sum(r["ours"] == r["theirs"] for r in selected)
        ours = sum(len(r["ours"]) for r in selected)
        shared = sum(len(r["ours"] & r["theirs"]) for r in selected)
        return {
            "sentences": len(selected),
            "identical_sentences": same,
            "entities_predict": ours,
            "entities_pipeline": sum(len(r["theirs"]) for r in selected),
            "entities_in_both": shared,
        }

    return {
        "all": part(rows),
        "pipeline_words_are_whitespace_words": part([r for r in rows if r["same_words"]]),
        "words_split_by_punctuation": part([r for r in rows if not r["same_words"]]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="run directory or model package (token classification)")
    parser.add_argument("--texts", default="../shared/data/conll2003/valid.txt")
    parser.add_argument("--batch-size", type=int, default=32, help="pipeline batch size")
    parser.add_argument("--out", default="benchmarks/results/cpu-2026-11-30-hf-parity.json")
    parser.add_argument("--limit", type=int, help="only the first N sentences (a quick check)")
    args = parser.parse_args()
    sentences = read_conll(args.texts)[: args.limit]
    load_start = os.getloadavg()[0]
    model_dir = resolve_model_dir(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        files = export_hf(load_package(model_dir), Path(tmp) / "hf")
        result = compare(str(model_dir), sentences, Path(tmp) / "hf", args.batch_size)
    meta = json.loads((model_dir / "tensorfab.json").read_text())
    summary = {
        "what": "export --format hf: transformers pipeline('ner', aggregation_strategy='first') "
        "vs tensorfab predict, (type, start, end) entities per sentence",
        "date": datetime.date.today().isoformat(),
        "device": f"cpu ({platform.processor() or platform.machine()}), "
        f"{torch.get_num_threads()} threads, shared with other jobs",
        "load_average_1min": {"start": load_start, "end": os.getloadavg()[0]},
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "model": relative(model_dir),
        "label_pieces": meta.get("task_config", {}).get("label_pieces", "first"),
        "model_metrics": {k: meta.get("metrics", {}).get(k) for k in ("selection", "test")},
        "texts": relative(args.texts),
        "exported_files": files,
        **result,
    }
    write_text_atomic(Path(args.out), json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
