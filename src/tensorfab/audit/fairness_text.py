"""A counterfactual test of a text model: sentences that differ only in whom they name.

In the manner of the Equity Evaluation Corpus (Kiritchenko and Mohammad, 2018; the templates,
words and names are our own, in ``audit/data/counterfactual.json``): each template is filled
with an emotion word (where it has one) and with each person of each group. A set names what
it measures, read from the rows the model's task answers (``predict``'s rows):

- ``positive_probability`` (sentiment, ``gender`` and ``name``): the probability of the
  favourable class, from the rows' class probabilities;
- ``per_recall`` (NER, ``name-origin``): 1 when an entity of type PER spans exactly the
  inserted name, else 0; its mean over a group is the recall of names of that origin.

The report gives per group the mean score and its positive rate, and per pair of groups the
mean over sentences that differ only in the person of the paired score difference.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import combinations
from typing import Any

import numpy as np

from tensorfab.engine.inference import predict_inputs
from tensorfab.errors import TensorfabError
from tensorfab.package import load_package

DATA = "counterfactual.json"
MEASURES = {"positive_probability": "P(positive)", "per_recall": "PER recall"}


@dataclass(frozen=True)
class Probe:
    """One sentence: its group, the person's index in the group, the (template, word) cell
    it shares with the other groups' sentences, the text and the person's character span."""

    group: str
    person: int
    cell: str
    text: str
    start: int
    end: int


@cache
def probe_sets() -> dict[str, dict[str, Any]]:
    """The sets of templates, words and groups (package data)."""
    text = resources.files("tensorfab.audit").joinpath("data").joinpath(DATA).read_text("utf-8")
    return json.loads(text)["sets"]


def _probe_set(attribute: str) -> dict[str, Any]:
    sets = probe_sets()
    if attribute not in sets:
        raise TensorfabError(f"--counterfactual: {attribute!r} is not one of {', '.join(sets)}")
    return sets[attribute]


def sentences(attribute: str) -> list[Probe]:
    """Every template x word x group x person of the set ``attribute``."""
    chosen = _probe_set(attribute)
    out = []
    for template in chosen["templates"]:
        for word in chosen["words"] or [""]:
            for group, people in chosen["groups"].items():
                for i, person in enumerate(people):
                    out.append(_probe(template, word, group, i, person))
    return out


def _probe(template: str, word: str, group: str, i: int, person: str) -> Probe:
    head, _, tail = template.partition("{person}")
    start = len(head.format(word=word))
    text = head.format(word=word) + person + tail.format(word=word)
    text = text[0].upper() + text[1:]
    return Probe(group, i, f"{template}|{word}", text, start, start + len(person))


def score_rows(measure: str, probes: list[Probe], rows: list[dict], positive: str) -> np.ndarray:
    """One score per sentence from the model's rows, by the set's measure."""
    if measure == "per_recall":
        return np.array([_per_found(p, r) for p, r in zip(probes, rows, strict=True)])
    return np.array([_probability(r, positive) for r in rows])


def _per_found(probe: Probe, row: dict[str, Any]) -> float:
    if "entities" not in row:
        raise TensorfabError(
            "--counterfactual: this set measures PER recall and the model's rows carry no "
            "entities (use a token-classification model)"
        )
    spans = {(e["start"], e["end"]) for e in row["entities"] if e["type"] == "PER"}
    return float((probe.start, probe.end) in spans)


def _probability(row: dict[str, Any], positive: str) -> float:
    probs = row.get("probabilities") or row.get("top")
    if not probs or positive not in probs:
        raise TensorfabError(
            "--counterfactual: this set measures a class probability and the model's rows "
            "carry none (use a text-classification model)"
        )
    return float(probs[positive])


def counterfactual_gaps(probes: list[Probe], scores: np.ndarray) -> dict[str, Any]:
    """Per group mean score and positive rate; per pair of groups the mean paired gap."""
    groups = list(dict.fromkeys(p.group for p in probes))
    report: dict[str, Any] = {"groups": {}, "pairs": {}}
    for g in groups:
        s = np.array([x for p, x in zip(probes, scores, strict=True) if p.group == g])
        report["groups"][g] = {
            "sentences": len(s),
            "mean_score": float(s.mean()),
            "positive_rate": float((s >= 0.5).mean()),
        }
    cell = {(p.group, p.person, p.cell): x for p, x in zip(probes, scores, strict=True)}
    for a, b in combinations(groups, 2):
        diffs = [
            x - cell[(b, i, k)] for (g, i, k), x in cell.items() if g == a and (b, i, k) in cell
        ]
        report["pairs"][f"{a} - {b}"] = {
            "mean_gap": float(np.mean(diffs)),
            "mean_abs_gap": float(np.mean(np.abs(diffs))),
            "pairs": len(diffs),
        }
    return report


def counterfactual_report(
    model: str, attribute: str = "gender", positive: str | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """Score the templated sentences with ``model`` and report the gap by ``attribute``."""
    measure = _probe_set(attribute)["measure"]
    classes = load_package(model).meta["labels"]
    if measure == "positive_probability":
        positive = positive or classes[-1]
        if positive not in classes:
            raise TensorfabError(f"--positive: {positive!r} is not a class of the model {classes}")
    probes = sentences(attribute)
    rows = predict_inputs(model, [p.text for p in probes], device=device, top_k=len(classes))
    scores = score_rows(measure, probes, rows, positive or "")
    return {
        "model": model,
        "attribute": attribute,
        "measure": MEASURES[measure],
        "positive": positive if measure == "positive_probability" else None,
        "templates": len(_probe_set(attribute)["templates"]),
        **counterfactual_gaps(probes, scores),
    }


def counterfactual_markdown(report: dict[str, Any]) -> str:
    """Groups and paired gaps as markdown tables."""
    what = report["measure"] + (f" = {report['positive']}" if report["positive"] else "")
    lines = [
        f"# Counterfactual test by {report['attribute']} ({what})",
        "",
        "| group | sentences | mean score | positive rate |",
        "| --- | ---: | ---: | ---: |",
    ]
    for g, v in report["groups"].items():
        lines.append(
            f"| {g} | {v['sentences']} | {v['mean_score']:.4f} | {v['positive_rate']:.4f} |"
        )
    lines += ["", "| pair | mean gap | mean absolute gap | pairs |", "| --- | ---: | ---: | ---: |"]
    for name, v in report["pairs"].items():
        lines.append(f"| {name} | {v['mean_gap']:+.4f} | {v['mean_abs_gap']:.4f} | {v['pairs']} |")
    return "\n".join(lines) + "\n"
