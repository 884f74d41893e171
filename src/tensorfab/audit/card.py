"""The model card: a ``README.md`` in the Hugging Face format (YAML metadata, then
sections), built only from what was measured: the package's ``tensorfab.json``, the run's
``report.json`` and the package's ``audit/*.json`` reports. A section with nothing behind it
says "not measured"; nothing is estimated.

The card lives in the package and is covered by its manifest like every file; writing it
goes through :func:`tensorfab.package.manifest.amending` (check, write, re-manifest), so
a regenerated card never hides a changed weight file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tensorfab.files import write_text_atomic
from tensorfab.package import resolve_model_dir
from tensorfab.package.io import read_meta
from tensorfab.package.manifest import amending

CARD_FILE = "README.md"
AUDIT_DIR = "audit"
NOT_MEASURED = "not measured"


def read_json(path: Path) -> dict[str, Any] | None:
    """A report, or None when there is none (or it is not a JSON object)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def gather(model_dir: Path) -> dict[str, Any]:
    """Everything the card is built from, each part None where it was not measured."""
    run_report = model_dir.parent / "report.json" if model_dir.name == "model" else None
    return {
        "meta": read_meta(model_dir),
        "run": read_json(run_report) if run_report else None,
        **{
            name: read_json(model_dir / AUDIT_DIR / f"{name}.json")
            for name in ("robustness", "fairness", "privacy")
        },
    }


def metadata(facts: dict[str, Any]) -> str:
    """The YAML front matter: plain scalars and lists, JSON-quoted (valid YAML)."""
    meta = facts["meta"]
    source = meta.get("data", {}).get("source", {})
    fields = {
        "library_name": "tensorfab",
        "pipeline_tag": _pipeline_tag(meta),
        "tags": ["tensorfab", meta["task"], meta["model"]["name"]],
        "license": "other",
        "datasets": [source["name"]] if source.get("name") else [],
    }
    lines = ["---"]
    for key, value in fields.items():
        if isinstance(value, list):
            lines += [f"{key}:"] + [f"- {json.dumps(v)}" for v in value] if value else []
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    return "\n".join([*lines, "---", ""])


def _pipeline_tag(meta: dict[str, Any]) -> str:
    """The Hub's name for the task, as recorded (tensorfab's names follow the Hub's)."""
    return str(meta["task"])


def _table(rows: list[list[Any]], header: list[str]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def section_intended_use(facts: dict[str, Any]) -> str:
    meta = facts["meta"]
    labels = meta.get("labels", [])
    shown = ", ".join(map(str, labels[:12])) + (" ..." if len(labels) > 12 else "")
    return (
        f"A `{meta['task']}` model (`{meta['model']['name']}`) trained with tensorfab, "
        f"predicting {len(labels)} labels: {shown}.\n"
        "Use it on inputs like its training data (below); not for decisions about people "
        "without the fairness audit and a human in the loop."
    )


def section_data(facts: dict[str, Any]) -> str:
    data = facts["meta"].get("data", {})
    source = data.get("source", {})
    if not source:
        return NOT_MEASURED
    lines = [f"- source: {source.get('name', '?')} ({source.get('path') or source.get('url', '')})"]
    lines.append(f"- licence: {source.get('licence', NOT_MEASURED)}")
    if source.get("citation"):
        lines.append(f"- citation: {source['citation']}")
    if data.get("split"):
        lines.append(f"- split: `{json.dumps(data['split'])}`")
    return "\n".join(lines)


def section_evaluation(facts: dict[str, Any]) -> str:
    test = facts["meta"].get("metrics", {}).get("test")
    members = (facts["meta"].get("ensemble") or {}).get("members")
    if members:
        return _ensemble_members(members)
    if not test:
        return NOT_MEASURED
    rows = [[k, v] for k, v in test.items() if isinstance(v, int | float)]
    return "Test split of the training data:\n\n" + _table(rows, ["metric", "value"])


def _ensemble_members(members: list[dict[str, Any]]) -> str:
    """An ensemble's members, each scored alone; the ensemble itself is scored by
    ``tensorfab evaluate``, which does not write into the package."""
    rows = [
        [m.get("run") or m["path"], _fmt(m["metrics"].get("f1", m["metrics"].get("accuracy"))),
         "-" if m.get("train_s") is None else f"{m['train_s']:,.0f}"]
        for m in members
    ]  # fmt: skip
    return (
        f"An ensemble of {len(members)} runs (the mean of their log-probabilities); each "
        "member alone on its test split (F1, or accuracy), and its training seconds. Score "
        "the ensemble with `tensorfab evaluate`.\n\n"
        + _table(rows, ["member", "score alone", "train s"])
    )


def section_fairness(facts: dict[str, Any]) -> str:
    report = facts["fairness"]
    if not report:
        return NOT_MEASURED + " (`tensorfab audit fairness`)"
    return "From `audit/fairness.json`:\n\n```json\n" + _summary(report) + "\n```"


def section_privacy(facts: dict[str, Any]) -> str:
    recorded = facts["meta"].get("privacy")
    report = facts["privacy"]
    if not recorded and not report:
        return NOT_MEASURED + " (trained without differential privacy)"
    parts = []
    if recorded:
        parts.append("Training (DP-SGD):\n\n```json\n" + _summary(recorded) + "\n```")
    if report:
        parts.append(
            "Membership inference (`audit/privacy.json`):\n\n```json\n" + _summary(report) + "\n```"
        )
    return "\n\n".join(parts)


def section_robustness(facts: dict[str, Any]) -> str:
    report = facts["robustness"]
    if not report:
        return NOT_MEASURED + " (`tensorfab audit robustness`)"
    metric = report["metric"]
    rows = [[r["attack"], r["eps"], r.get(metric)] for r in report["rows"]]
    return f"{report['data']}, {report['device']}:\n\n" + _table(rows, ["attack", "eps", metric])


def section_energy(facts: dict[str, Any]) -> str:
    run = facts["run"]
    if not run:
        return NOT_MEASURED
    hardware = run.get("hardware", {})
    timings = run.get("timings", {})
    energy = run.get("energy") or run.get("throughput", {}).get("energy_j")
    lines = [
        f"- hardware: `{json.dumps(hardware)}`",
        f"- training time: {timings.get('train_s', NOT_MEASURED)} s "
        f"(total {timings.get('total_s', NOT_MEASURED)} s)",
        f"- energy: {energy if energy else NOT_MEASURED}",
    ]
    return "\n".join(lines)


def section_limitations(facts: dict[str, Any]) -> str:
    missing = [name for name in ("robustness", "fairness", "privacy") if not facts[name]]
    gaps = f" Not audited: {', '.join(missing)}." if missing else ""
    return (
        "Scores hold for data like the test split above; other domains, languages or image "
        "sources may score lower." + gaps
    )


SECTIONS = (
    ("Intended use", section_intended_use),
    ("Training data and licence", section_data),
    ("Evaluation", section_evaluation),
    ("Fairness by group", section_fairness),
    ("Privacy", section_privacy),
    ("Robustness", section_robustness),
    ("Energy and hardware of training", section_energy),
    ("Limitations", section_limitations),
)


def _summary(report: dict[str, Any], limit: int = 3000) -> str:
    text = json.dumps(report, indent=2, default=str)
    return text if len(text) <= limit else text[:limit] + "\n..."


def card_text(model_dir: Path) -> str:
    """The whole card of the package at ``model_dir``."""
    facts = gather(model_dir)
    name = facts["run"]["name"] if facts["run"] else model_dir.name
    body = [f"# {name}", ""]
    for title, section in SECTIONS:
        body += [f"## {title}", "", section(facts), ""]
    return metadata(facts) + "\n" + "\n".join(body)


def write_card(model: str | Path) -> Path:
    """(Re)write the package's ``README.md`` and its manifest."""
    model_dir = resolve_model_dir(model)
    with amending(model_dir):
        write_text_atomic(model_dir / CARD_FILE, card_text(model_dir))
    return model_dir / CARD_FILE
