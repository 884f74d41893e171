"""Run reports: one report dict written as ``report.json`` (all of it) and ``report.md`` (to read).

The engine builds the dict; this module only renders and writes it. Any section may be missing,
and keys the markdown does not know are kept in the JSON and skipped in the markdown.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tensorfab.files import write_text_atomic

NA = "n/a"


def format_metric(x: Any, digits: int = 4) -> str:
    """Floats to ``digits`` decimals, ints as ints, None as "n/a", anything else via str()."""
    if x is None:
        return NA
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def format_percent(x: float | None, digits: int = 2) -> str:
    """A fraction (0.42) as a percent ("42.00%"); None as "n/a"."""
    if x is None:
        return NA
    return f"{100.0 * x:.{digits}f}%"


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = ""
) -> list[str]:
    """A markdown table's lines; ``align`` has an ``r`` for each right-aligned column.

    The one table writer of the run, export and bench reports, so all escape alike.
    """

    def line(cells: Sequence[Any]) -> str:
        # a "|" inside a cell (say, in a class name) would split the column
        text = [str(cell).replace("|", "\\|") for cell in cells]
        return "|" + "|".join(f" {t} " if t else " " for t in text) + "|"

    rule = [("---:" if a == "r" else "---") for a in align.ljust(len(header), "l")]
    return [line(header), line(rule), *map(line, rows)]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [*markdown_table(header, rows), ""]


def _get(report: Mapping[str, Any], *keys: str) -> Any:
    """report[k1][k2]..., or None where any level is missing or not a mapping."""
    node: Any = report
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def _best_text(best: Any) -> str:
    if not isinstance(best, Mapping) or best.get("value") is None:
        return NA
    text = f"{best.get('metric', 'metric')} = {format_metric(best.get('value'))}"
    if best.get("epoch") is not None:
        text += f" (epoch {best['epoch']})"
    if best.get("averaged_epochs"):
        ep = best["averaged_epochs"]
        text += f" (weights averaged over epochs {ep[0]}-{ep[-1]})"
    return text


def _samples_per_s(x: Any) -> str:
    return NA if x is None else f"{x:,.1f}"


def scored_split(report: Mapping[str, Any]) -> str:
    """The split the final scores (``metrics.test``) come from: ``test``, or ``eval``.

    With no test file of its own (CoNLL or text data with ``eval_path`` only, or a
    held-out eval part) the data's test split *is* its eval split (``split.test: eval``),
    and a label saying "test" would claim an unseen split the model was selected on.
    """
    split = report.get("data", {}).get("split") or {}
    return "eval" if isinstance(split, dict) and split.get("test") == "eval" else "test"


def subset_note(report: Mapping[str, Any], part: str, label: str) -> str:
    """`` (eval subset: 400 of 3,250)`` when the data's ``part`` was cut by ``data.limit_*``;
    ``label`` is what the report calls that part (a test part that is the eval file: eval)."""
    cut = report.get("data", {}).get("subsets", {}).get(part)
    return f" ({label} subset: {cut['used']:,} of {cut['of']:,})" if cut else ""


def _summary(report: Mapping[str, Any]) -> list[str]:
    scores = _get(report, "metrics", "test") or _get(report, "metrics", "eval") or {}
    scores_split = scored_split(report) if _get(report, "metrics", "test") else "eval"
    cut = subset_note(report, "test" if _get(report, "metrics", "test") else "eval", scores_split)
    rows = [
        ("status", str(report.get("status", NA))),
        ("task", str(report.get("task", NA))),
        ("device", _device_text(report.get("hardware"))),
        *runtime_rows(hw if isinstance(hw := report.get("hardware"), Mapping) else {}),
        ("best", _best_text(_get(report, "metrics", "best")) + subset_note(report, "eval", "eval")),
        # NER reports entity-level micro F1 where classification reports accuracy
        (f"{scores_split} entity F1", format_metric(_get(scores, "f1")) + cut)
        if "entity" in scores
        else (f"{scores_split} accuracy", format_metric(_get(scores, "accuracy")) + cut),
        (f"{scores_split} macro F1", format_metric(_get(scores, "macro_f1")) + cut),
        ("train samples/s", _samples_per_s(_get(report, "throughput", "train_samples_per_s"))),
        ("eval samples/s", _samples_per_s(_get(report, "throughput", "eval_samples_per_s"))),
        ("MFU", _mfu_text(report.get("throughput"))),
    ]
    return ["## Summary", "", *_table(("", "value"), rows)]


def runtime_rows(hw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The precision and the thread count, each with why it was chosen (a report from
    before issue 18 has neither reason: its precision alone)."""
    choice, threads = hw.get("precision_choice"), hw.get("threads")
    precision = str(hw.get("precision") or NA)
    why = isinstance(choice, Mapping) and choice.get("reason")
    rows = [("precision", f"{precision}: {why}" if why else precision)]
    if isinstance(threads, Mapping):
        rows.append(("threads", f"{threads.get('threads', NA)}: {threads.get('reason', NA)}"))
    elif threads:  # a bare count (the hardware section's own, in older reports)
        rows.append(("threads", str(threads)))
    return rows


def _device_text(hardware: Any) -> str:
    if not isinstance(hardware, Mapping):
        return NA
    device, name = hardware.get("device"), hardware.get("device_name")
    if device and name and name != device:
        return f"{device} ({name})"
    return str(device or name or NA)


def _tflops(value: float) -> str:
    """One decimal for a GPU's hundreds, three for a CPU's fractions (0.083)."""
    return f"{value:.1f}" if value >= 10 else f"{value:.3f}"


def _mfu_text(throughput: Any) -> str:
    """MFU against the measured peak; the datasheet peak shown beside it where known."""
    if not isinstance(throughput, Mapping):
        return NA
    text = format_percent(throughput.get("mfu"))
    peaks = []
    if throughput.get("peak_tflops") is not None:
        peaks.append(f"measured peak {_tflops(throughput['peak_tflops'])} TFLOP/s")
    if throughput.get("datasheet_peak_tflops") is not None:
        peaks.append(f"datasheet peak {_tflops(throughput['datasheet_peak_tflops'])} TFLOP/s")
    return f"{text} ({', '.join(peaks)})" if peaks else text


def _data_and_model(report: Mapping[str, Any]) -> list[str]:
    rows = []
    for key in ("train_size", "eval_size", "test_size"):
        if _get(report, "data", key) is not None:
            rows.append((key.replace("_", " "), str(report["data"][key])))
    model = report.get("model")
    if isinstance(model, Mapping):
        if model.get("name") is not None:
            rows.append(("model", str(model["name"])))
        if model.get("parameters") is not None:
            rows.append(("parameters", f"{int(model['parameters']):,}"))
        if "flops_per_sample" in model:
            flops = model["flops_per_sample"]
            rows.append(("FLOPs per sample", NA if flops is None else f"{flops:.3g}"))
    return ["## Data and model", "", *_table(("", "value"), rows)] if rows else []


def _per_class(title: str, scores: Any) -> list[str]:
    per_class = _get(scores, "per_class")
    if not isinstance(per_class, Mapping) or not per_class:
        return []
    rows = [
        (
            str(name),
            format_metric(_get(row, "precision")),
            format_metric(_get(row, "recall")),
            format_metric(_get(row, "f1")),
            format_metric(_get(row, "support")),
        )
        for name, row in per_class.items()
    ]
    header = ("class", "precision", "recall", "F1", "support")
    return [f"## Per class ({title})", "", *_table(header, rows)]


def _history(history: Any) -> list[str]:
    if not isinstance(history, Sequence) or not history:
        return []
    rows_in = [row for row in history if isinstance(row, Mapping)]
    columns: list[str] = []
    for row in rows_in:
        columns += [key for key in row if key not in columns]
    if "epoch" in columns:
        columns.remove("epoch")
        columns.insert(0, "epoch")
    rows = [tuple(format_metric(row.get(col)) for col in columns) for row in rows_in]
    return ["## History", "", *_table(columns, rows)] if columns else []


def _averaging(avg: Any) -> list[str]:
    """``train.average_last``: what was averaged, its score against the best epoch's, which
    one the package holds, and what it cost."""
    if not isinstance(avg, Mapping):
        return []
    if avg.get("skipped"):
        return ["## Weight averaging", "", str(avg["skipped"]), ""]
    ep, best, cost = avg["epochs"], avg["best_epoch"], avg["cost"]
    rows = [
        ("averaged", f"the weights at the ends of epochs {ep[0]}-{ep[-1]} ({len(ep)})"),
        (f"average {avg['metric']}", format_metric(avg["value"])),
        (f"best epoch ({best['epoch']}) {avg['metric']}", format_metric(best["value"])),
        ("packaged", str(avg["packaged"])),
        ("extra memory", f"{cost['extra_memory_bytes'] / 2**20:.1f} MiB (one fp32 copy)"),
        ("extra time", f"{cost['average_s']:.2f} s averaging + {cost['eval_s']:.2f} s eval"),
    ]
    return ["## Weight averaging", "", *_table(("", "value"), rows)]


def _timings(report: Mapping[str, Any]) -> list[str]:
    timings = report.get("timings")
    epoch_times = _get(report, "throughput", "epoch_time_s")
    rows = []
    if isinstance(timings, Mapping):
        rows = [(key.removesuffix("_s"), _seconds(value)) for key, value in timings.items()]
    if isinstance(epoch_times, Sequence) and epoch_times:
        rows.append(("per epoch", ", ".join(_seconds(t) for t in epoch_times)))
    return ["## Timings", "", *_table(("", "seconds"), rows)] if rows else []


def _seconds(x: Any) -> str:
    return NA if x is None else (f"{x:.2f}" if isinstance(x, (int, float)) else str(x))


def _artifacts(artifacts: Any) -> list[str]:
    if not isinstance(artifacts, Mapping) or not artifacts:
        return []
    lines = ["## Artifacts", ""]
    for key, value in artifacts.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        lines += [f"- {key}: `{item}`" for item in items]
    return [*lines, ""]


def _split_scores(split: str, scores: Any) -> list[str]:
    """Per-class tables for classification, per-type and per-tag tables for NER."""
    if isinstance(scores, Mapping) and isinstance(scores.get("entity"), Mapping):
        text = sequence_report_markdown(scores["entity"], scores.get("token"))
        errors = scores.get("errors")
        if isinstance(errors, Mapping):
            text += "\n" + entity_errors_markdown(errors)
        return [f"## {split.capitalize()} split", "", text.replace("## ", "### "), ""]
    return _per_class(split, scores)


def render_markdown(report: Mapping[str, Any]) -> str:
    """The human-readable report; sections whose data is missing are left out."""
    title = f"# Run report: {report.get('name', 'unnamed')}"
    lines = [title, ""]
    if report.get("created"):
        lines += [f"Created {report['created']}.", ""]
    lines += _summary(report)
    lines += _data_and_model(report)
    lines += _split_scores(scored_split(report), _get(report, "metrics", "test"))
    lines += _split_scores("eval", _get(report, "metrics", "eval"))
    lines += _averaging(report.get("averaging"))
    lines += _history(report.get("history"))
    lines += _timings(report)
    lines += _artifacts(report.get("artifacts"))
    return "\n".join(lines).rstrip() + "\n"


def write_report(run_dir: Path, report: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``run_dir``, each atomically."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = run_dir / "report.json", run_dir / "report.md"
    # report.json last: a run's engine takes it as the sign that the whole report is there
    write_text_atomic(md_path, render_markdown(report))
    # a stray numpy scalar or Path must not lose the whole report: see _json_default
    write_text_atomic(json_path, json.dumps(report, indent=2, default=_json_default) + "\n")
    return json_path, md_path


def _json_default(value: Any) -> Any:
    """numpy scalars/arrays as plain numbers/lists; anything else as its str()."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _averages(per_row: Mapping[str, Any]) -> tuple[float | None, ...]:
    """Macro and support-weighted precision/recall over the rows (sklearn's definitions)."""
    rows = [row for row in per_row.values() if isinstance(row, Mapping)]
    try:
        values = [(float(r["precision"]), float(r["recall"]), int(r["support"])) for r in rows]
    except (KeyError, TypeError, ValueError):
        return None, None, None, None
    if not values:
        return 0.0, 0.0, 0.0, 0.0
    total = sum(support for _, _, support in values)
    macro_p = sum(p for p, _, _ in values) / len(values)
    macro_r = sum(r for _, r, _ in values) / len(values)
    if not total:
        return macro_p, macro_r, 0.0, 0.0
    weighted_p = sum(p * support for p, _, support in values) / total
    weighted_r = sum(r * support for _, r, support in values) / total
    return macro_p, macro_r, weighted_p, weighted_r


def _score_table(
    name: str, per_row: Any, micro: Sequence[Any], f1s: Sequence[Any], total: Any
) -> list[str]:
    """Per-row precision/recall/F1/support, then micro, macro and weighted average rows."""
    per_row = per_row if isinstance(per_row, Mapping) else {}
    rows = [
        (
            str(key),
            *(format_metric(_get(row, k)) for k in ("precision", "recall", "f1", "support")),
        )
        for key, row in per_row.items()
    ]
    macro_p, macro_r, weighted_p, weighted_r = _averages(per_row)
    rows += [
        ("micro avg", *map(format_metric, micro), format_metric(total)),
        ("macro avg", *map(format_metric, (macro_p, macro_r, f1s[0], total))),
        ("weighted avg", *map(format_metric, (weighted_p, weighted_r, f1s[1], total))),
    ]
    return _table((name, "precision", "recall", "F1", "support"), rows)


def sequence_report_markdown(
    entity: Mapping[str, Any], token: Mapping[str, Any] | None = None
) -> str:
    """Markdown for sequence-labelling scores: ``entity_scores`` per type, ``token_scores`` per tag.

    Macro and weighted precision/recall are averaged from the table's rows; F1 comes from the
    dicts, so the tables read like sklearn's / seqeval's classification reports.
    """
    lines = ["## Entities (exact type and boundaries)", ""]
    entity_micro = [entity.get(key) for key in ("precision", "recall", "f1")]
    entity_f1s = [entity.get("macro_f1"), entity.get("weighted_f1")]
    lines += _score_table(
        "type", entity.get("per_type"), entity_micro, entity_f1s, entity.get("n_entities_true")
    )
    lines += [
        f"{format_metric(entity.get('n_sentences'))} sentences, "
        f"{format_metric(entity.get('n_entities_true'))} true entities, "
        f"{format_metric(entity.get('n_entities_pred'))} predicted.",
        "",
    ]
    if token is not None:
        # single-label per token: micro precision = recall = F1 = accuracy
        token_micro = [token.get("micro_f1")] * 3
        token_f1s = [token.get("macro_f1"), token.get("weighted_f1")]
        lines += ["## Tokens", ""]
        lines += _score_table("tag", token.get("per_class"), token_micro, token_f1s, token.get("n"))
    return "\n".join(lines).rstrip() + "\n"


def entity_errors_markdown(errors: Mapping[str, Any]) -> str:
    """Markdown for ``entity_errors``: the kinds of error per type, then the top confusions."""
    kinds = ("correct", "boundary", "wrong_type", "missed", "spurious")
    per_type = errors.get("per_type") if isinstance(errors.get("per_type"), Mapping) else {}
    rows = [(str(t), *(format_metric(_get(row, k)) for k in kinds)) for t, row in per_type.items()]
    lines = ["## Entity errors", ""]
    lines += [
        "Each predicted entity is correct, a boundary error (right type, wrong span), of the",
        "wrong type (counted under the true type) or spurious (counted under its own type);",
        "missed: a true entity no prediction overlaps.",
        "",
    ]
    lines += _table(("type", "correct", "boundary", "wrong type", "missed", "spurious"), rows)
    confusions = errors.get("confusions") or []
    if confusions:
        lines += ["Most frequent type confusions (true -> predicted):", ""]
        lines += _table(
            ("true", "predicted", "count", "same span"),
            [
                (
                    str(c.get("true")),
                    str(c.get("pred")),
                    str(c.get("count")),
                    str(c.get("same_span")),
                )
                for c in confusions
            ],
        )
    return "\n".join(lines).rstrip() + "\n"
