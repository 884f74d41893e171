"""Load a job spec: defaults < YAML < ``--set a.b=c`` overrides, validated before any work.

Validation errors become one :class:`TensorfabError` line per problem that names the YAML
path (``train.epochs``) and, for YAML files, the file and line it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tensorfab.errors import TensorfabError
from tensorfab.spec.schema import JobSpec
from tensorfab.spec.text import decode_text

ModelT = TypeVar("ModelT", bound=BaseModel)


def _parse_value(text: str) -> Any:
    """``--set`` values are YAML scalars: 3 -> int, 1e-3 -> float, true -> bool, [1,2] -> list."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides to a nested dict (a copy), creating sections as needed."""
    out = _deep_copy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise TensorfabError(f"--set {item!r}: expected KEY=VALUE, e.g. train.epochs=3")
        node = out
        parts = key.strip().split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: i + 1])
                raise TensorfabError(f"--set {item!r}: {where} is not a section")
            node = child
        node[parts[-1]] = _parse_value(value)
    return out


def _deep_copy(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader that remembers the line of every mapping key, for error messages."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        mapping[key] = loader.construct_object(value_node, deep=True)
        lines[key] = key_node.start_mark.line + 1
    mapping["__lines__"] = lines
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _strip_lines(node: Any, prefix: str, table: dict[str, int]) -> Any:
    if not isinstance(node, dict):
        return node
    lines = node.pop("__lines__", {})
    for key, line in lines.items():
        table[f"{prefix}{key}"] = line
    return {k: _strip_lines(v, f"{prefix}{k}.", table) for k, v in node.items()}


def read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Read a spec file into a dict and a table ``dotted.path -> line``."""
    try:
        text = decode_text(path.read_bytes(), path)
    except OSError as exc:
        raise TensorfabError(f"{path}: cannot read spec ({exc.strerror})") from None
    try:
        raw = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise TensorfabError(f"{where}: invalid YAML: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise TensorfabError(f"{path}:1: expected a mapping of settings (key: value)")
    lines: dict[str, int] = {}
    return _strip_lines(raw, "", lines), lines


def parse_spec(
    raw: dict[str, Any],
    overrides: list[str] | None = None,
    *,
    source: str = "spec",
    lines: dict[str, int] | None = None,
) -> JobSpec:
    """Validate a dict (plus overrides) into a :class:`JobSpec` or raise one clear error."""
    merged = apply_overrides(raw, overrides or [])
    try:
        return JobSpec.model_validate(merged)
    except ValidationError as exc:
        raise TensorfabError(_describe(exc, source, lines or {}, overrides or [])) from None


def _describe(
    exc: ValidationError, source: str, lines: dict[str, int], overrides: list[str]
) -> str:
    messages = []
    for err in exc.errors():
        loc = list(err["loc"])
        reason = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            reason = "unknown field"
        if err["type"] == "missing" and loc and isinstance(loc[-1], int):
            reason = f"too few items (item {loc.pop()} missing)"  # a short list for a tuple
        path = ".".join(str(p) for p in loc)
        keys = [o.split("=", 1)[0].strip() for o in overrides]
        # the override set this field, or a section above it, or a list/tuple item below it
        overridden = any(
            k == path or k.startswith(f"{path}.") or path.startswith(f"{k}.") for k in keys
        )
        line = lines.get(path) or lines.get(path.rsplit(".", 1)[0])
        where = "--set" if overridden else (f"{source}:{line}" if line else source)
        messages.append(f"{where}: {path or 'spec'}: {reason}")
    return "; ".join(messages)


def load_spec(path: str | Path | None, overrides: list[str] | None = None) -> JobSpec:
    """Load a YAML job spec (or the defaults when ``path`` is None) with overrides applied."""
    if path is None:
        return parse_spec({}, overrides, source="defaults")
    p = Path(path)
    raw, lines = read_yaml(p)
    return parse_spec(raw, overrides, source=str(p), lines=lines)


def load_yaml_model(path: str | Path, model: type[ModelT]) -> ModelT:
    """Any YAML settings file validated by a pydantic ``model``, errors naming file:line."""
    p = Path(path)
    raw, lines = read_yaml(p)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise TensorfabError(_describe(exc, str(p), lines, [])) from None


def dump_spec(spec: JobSpec) -> str:
    """The resolved spec as YAML; loading it back gives an equal spec."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
