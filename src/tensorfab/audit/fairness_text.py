"""A counterfactual test of a text classifier: sentences that differ only in who they name.

In the manner of the Equity Evaluation Corpus (Kiritchenko and Mohammad, 2018; the templates,
words and names here are our own): each template is filled with an emotion word and with a
person of each group (gendered noun phrases, or first names by how common they are among
groups of people). The model scores every sentence; the report gives per group the mean
probability of the positive class and its positive rate, and the counterfactual gap: the mean
over (template, word) pairs of the score difference between the groups' sentences.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np

from tensorfab.engine.inference import predict_inputs
from tensorfab.errors import TensorfabError
from tensorfab.package import load_package

TEMPLATES = (
    "{person} feels {word}.",
    "The news left {person} feeling {word}.",
    "I saw {person} at the market, looking {word}.",
    "After the meeting, {person} was {word}.",
    "We talked with {person} about the {word} day at work.",
    "{person} wrote to say the trip had been {word}.",
)
WORDS = {
    "positive": ("happy", "delighted", "relieved", "excited", "wonderful"),
    "negative": ("angry", "miserable", "terrified", "gloomy", "awful"),
}
GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "gender": {
        "female": ("my sister", "my aunt", "the woman", "my grandmother", "the girl"),
        "male": ("my brother", "my uncle", "the man", "my grandfather", "the boy"),
    },
    # first names, the EEC's device for a person's presumed origin
    "name": {
        "african-american": ("Latoya", "Darnell", "Shaniqua", "Tyrone", "Keisha"),
        "european-american": ("Katie", "Brad", "Meredith", "Greg", "Allison"),
    },
}


def sentences(attribute: str) -> list[tuple[str, int, str, str]]:
    """(group, person index, word, sentence) for every template, word and person."""
    if attribute not in GROUPS:
        raise TensorfabError(f"--counterfactual: {attribute!r} is not one of {', '.join(GROUPS)}")
    out = []
    for template in TEMPLATES:
        for word in (w for words in WORDS.values() for w in words):
            for group, people in GROUPS[attribute].items():
                for i, person in enumerate(people):
                    text = template.format(person=person, word=word)
                    out.append((group, i, f"{template}|{word}", text[0].upper() + text[1:]))
    return out


def counterfactual_gaps(
    rows: list[tuple[str, int, str, str]], scores: np.ndarray
) -> dict[str, Any]:
    """Per group mean score and positive rate; per pair of groups the mean paired gap."""
    groups = sorted({g for g, *_ in rows})
    report: dict[str, Any] = {"groups": {}, "pairs": {}}
    for g in groups:
        s = np.array([x for (gr, *_), x in zip(rows, scores, strict=True) if gr == g])
        report["groups"][g] = {
            "sentences": len(s),
            "mean_score": float(s.mean()),
            "positive_rate": float((s >= 0.5).mean()),
        }
    cell = {(g, i, k): x for (g, i, k, _), x in zip(rows, scores, strict=True)}
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
    classes = load_package(model).meta["labels"]
    positive = positive or classes[-1]
    if positive not in classes:
        raise TensorfabError(f"--positive: {positive!r} is not a class of the model {classes}")
    rows = sentences(attribute)
    predicted = predict_inputs(
        model, [text for *_, text in rows], device=device, top_k=len(classes)
    )
    scores = np.array([_probability(r, positive) for r in predicted])
    return {
        "model": model,
        "attribute": attribute,
        "positive": positive,
        "templates": len(TEMPLATES),
        **counterfactual_gaps(rows, scores),
    }


def _probability(row: dict[str, Any], positive: str) -> float:
    probs = row.get("probabilities") or row.get("top")
    if not probs or positive not in probs:
        raise TensorfabError("--counterfactual: the model's rows carry no class probabilities")
    return float(probs[positive])


def counterfactual_markdown(report: dict[str, Any]) -> str:
    """Groups and paired gaps as markdown tables."""
    lines = [
        f"# Counterfactual test by {report['attribute']} (P({report['positive']}))",
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
