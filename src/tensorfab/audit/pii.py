"""Find personal data in text: e-mail addresses, phone numbers, card numbers (Luhn), IBANs
(mod 97), IP addresses; names, places and organisations through a tensorfab NER model.

Patterns propose candidates; checksums and context decide. A digit run is a card only if
it passes Luhn, an IBAN only if it passes ISO 13616's mod-97 check, an IPv4 address only if
every octet is at most 255 and no word like "version" or "build" stands before it. A phone
number needs a phone shape (a leading ``+``, brackets or separators) or a phone word before
it, and a number preceded by an identifier word (order, invoice, ID, serial, ISBN, tracking)
is none of these. Nothing is downloaded at run time.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tensorfab.errors import TensorfabError
from tensorfab.files import write_text_atomic

PATTERN_TYPES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "IP")
CONTEXT_CHARS = 24  # how far before a candidate the context words are looked for

ID_WORDS = re.compile(
    r"\b(order|invoice|inv|id|serial|isbn|tracking|patent|ref|reference|account id|"
    r"build|version|v|release|ticket|room|score|scores)\b"
    r"(?:\s*(?:number|num|no|nr)\b)?[\s:#.-]*$",
    re.IGNORECASE,
)
PHONE_WORDS = re.compile(r"\b(phone|tel|call|mobile|cell|fax|reach|ring|whatsapp)\b", re.I)

EMAIL_RE = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][\w.+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")
CARD_RE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
IPV4_RE = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")
IPV6_RE = re.compile(r"(?<![\w:])[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
PHONE_RE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ -]?)?(?:\(\d{2,4}\)[ -]?)?\d{1,4}(?:[ -]\d{1,8}){1,5}(?![\w-])"
    r"|(?<![\w+])\+?\d{7,15}\b"
)
DATE_RE = re.compile(r"\b(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/-]\d{1,2}[/-]\d{2,4})\b")


@dataclass(frozen=True)
class Finding:
    """One piece of personal data: where it is and what kind."""

    type: str
    start: int
    end: int
    text: str
    file: str = ""
    line: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def luhn_ok(digits: str) -> bool:
    """The Luhn check of a card number (digits only)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters to 10..35, mod 97 == 1."""
    raw = text.replace(" ", "")
    if not 15 <= len(raw) <= 34:
        return False
    rearranged = raw[4:] + raw[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _id_before(text: str, start: int) -> bool:
    return bool(ID_WORDS.search(text[max(0, start - CONTEXT_CHARS) : start]))


def _emails(text: str) -> Iterator[tuple[str, int, int]]:
    for m in EMAIL_RE.finditer(text):
        yield "EMAIL", m.start(), m.end()


def _ibans(text: str) -> Iterator[tuple[str, int, int]]:
    for m in IBAN_RE.finditer(text):
        if iban_ok(m.group()):
            yield "IBAN", m.start(), m.end()


def _cards(text: str) -> Iterator[tuple[str, int, int]]:
    for m in CARD_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and not _id_before(text, m.start()):
            yield "CREDIT_CARD", m.start(), m.end()


def _ips(text: str) -> Iterator[tuple[str, int, int]]:
    for m in [*IPV4_RE.finditer(text), *IPV6_RE.finditer(text)]:
        try:
            ipaddress.ip_address(m.group())
        except ValueError:
            continue
        if not _id_before(text, m.start()):
            yield "IP", m.start(), m.end()


def _phones(text: str) -> Iterator[tuple[str, int, int]]:
    for m in PHONE_RE.finditer(text):
        value = m.group()
        digits = re.sub(r"\D", "", value)
        shaped = value.startswith("+") or "(" in value or bool(re.search(r"\d[ .-]\d", value))
        worded = bool(PHONE_WORDS.search(text[max(0, m.start() - CONTEXT_CHARS) : m.start()]))
        if 7 <= len(digits) <= 15 and (shaped or worded) and not _id_before(text, m.start()):
            yield "PHONE", m.start(), m.end()


# the order settles overlaps: a checksum-verified number wins over a phone shape
DETECTORS: tuple[Callable[[str], Iterable[tuple[str, int, int]]], ...] = (
    _emails,
    _ibans,
    _cards,
    _ips,
    _phones,
)


def _look_alikes(text: str) -> list[Finding]:
    """Spans shaped like an IBAN, a card number or a date that failed their checks: context
    that no other detector may claim (a bad IBAN's digit groups are not a phone number)."""
    spans = [m.span() for m in IBAN_RE.finditer(text)]
    spans += [m.span() for m in CARD_RE.finditer(text) if len(re.sub(r"\D", "", m.group())) >= 13]
    spans += [m.span() for m in DATE_RE.finditer(text)]
    return [Finding("", start, end, "") for start, end in spans]


def find_patterns(text: str) -> list[Finding]:
    """Every pattern entity in ``text``, non-overlapping, in order of position."""
    taken: list[Finding] = []
    for detector in DETECTORS:
        for kind, start, end in detector(text):
            if all(end <= f.start or start >= f.end for f in taken):
                taken.append(Finding(kind, start, end, text[start:end]))
        if detector is _cards:  # checked numbers are placed: now block what failed its check
            taken += _look_alikes(text)
    return sorted((f for f in taken if f.type), key=lambda f: f.start)


def redact(text: str, findings: Iterable[Finding]) -> str:
    """``text`` with each finding replaced by ``[TYPE]``."""
    out, last = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        out += [text[last : f.start], f"[{f.type}]"]
        last = f.end
    return "".join(out) + text[last:]


# -- files: scan, count, redact ------------------------------------------------------------

NER_TYPES = ("PER", "LOC", "ORG")
NerFn = Callable[[list[str]], list[list[Finding]]]


def text_files(path: Path) -> list[Path]:
    """``path`` itself, or every file under it (sorted); hidden files and folders skipped."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise TensorfabError(f"{path}: no such file or folder")
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )


def read_lines(path: Path) -> list[str] | None:
    """The file's lines, or None for a file that is not UTF-8 text (skipped, and counted)."""
    try:
        return path.read_text(encoding="utf-8").splitlines(keepends=True)
    except UnicodeDecodeError:
        return None


def scan_lines(lines: list[str], file: str, ner: NerFn | None = None) -> list[list[Finding]]:
    """Per line, its findings (pattern entities, then NER entities that overlap none)."""
    found = [find_patterns(line) for line in lines]
    if ner is not None:
        for i, names in enumerate(ner(lines)):
            found[i] = _merge(found[i], names)
    return [
        [Finding(f.type, f.start, f.end, f.text, file, n + 1) for f in line]
        for n, line in enumerate(found)
    ]


def _merge(patterns: list[Finding], names: list[Finding]) -> list[Finding]:
    free = [n for n in names if all(n.end <= f.start or n.start >= f.end for f in patterns)]
    return sorted(patterns + free, key=lambda f: f.start)


def ner_from_model(model: str, device: str = "cpu") -> NerFn:
    """PER/LOC/ORG spans from a tensorfab token-classification package, line by line."""
    from tensorfab.engine.inference import predict_inputs

    _check_ner_labels(model)

    def ner(lines: list[str]) -> list[list[Finding]]:
        texts = [line.rstrip("\n") or " " for line in lines]
        rows = predict_inputs(model, texts, device=device, top_k=1) if texts else []
        if rows and "entities" not in rows[0]:
            raise TensorfabError(f"--ner {model}: its answers carry no entities (not an NER model)")
        return [_ner_findings(row["entities"]) for row in rows]

    return ner


def _check_ner_labels(model: str) -> None:
    """Refuse, before any line is read, a package whose labels name none of PER/LOC/ORG
    (an image or sentence classifier): its task would read the lines as something else."""
    from tensorfab.package.io import read_meta, resolve_model_dir

    labels = read_meta(resolve_model_dir(model))["labels"]
    if not any(label.rpartition("-")[2] in NER_TYPES for label in labels):
        shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
        raise TensorfabError(
            f"--ner {model}: not an NER model (its labels {shown} name no PER, LOC or ORG)"
        )


def _ner_findings(entities: list[dict[str, Any]]) -> list[Finding]:
    return [
        Finding(e["type"], e["start"], e["end"], e["text"])
        for e in entities
        if e["type"] in NER_TYPES
    ]


@dataclass
class PiiReport:
    """What a scan found: each finding, counts by type, files scanned and skipped."""

    findings: list[Finding]
    files: int
    skipped: list[str]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for f in self.findings:
            counts[f.type] = counts.get(f.type, 0) + 1
        return dict(sorted(counts.items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "skipped": self.skipped,
            "counts": self.counts(),
            "findings": [f.as_dict() for f in self.findings],
        }


def check_redact_target(path: Path, out: Path) -> None:
    """Refuse a ``--redact`` target that would destroy or feed back into data: the input
    itself, anything inside the input folder (the next scan would read the copies and nest
    them), an existing file, or a folder that is not empty (as ``export --format hf``). A
    redacted copy is a new thing; it never replaces what is there."""
    src, dst = path.resolve(), out.resolve()
    if dst == src:
        raise TensorfabError(f"--redact {out}: is the input itself (the originals would be lost)")
    if src.is_dir() and dst.is_relative_to(src):
        raise TensorfabError(f"--redact {out}: is inside the input folder {path}")
    if dst.is_file() or (dst.exists() and not dst.is_dir()):
        raise TensorfabError(f"--redact {out}: exists (pick a new path; nothing is replaced)")
    if dst.is_dir() and (src.is_file() or any(dst.iterdir())):
        what = "is a folder (a file's copy is a file)" if src.is_file() else "folder is not empty"
        raise TensorfabError(f"--redact {out}: {what}")
    above = next(p for p in dst.parents if p.exists())  # the root always exists
    if not above.is_dir():
        raise TensorfabError(f"--redact {out}: {above} is not a folder")


def scan(path: Path, redact_to: Path | None = None, ner: NerFn | None = None) -> PiiReport:
    """Scan a file or a folder; with ``redact_to``, write each text file's redacted copy
    there (a file for a file, the same tree for a folder), after
    :func:`check_redact_target` accepted it."""
    files = text_files(path)
    if redact_to is not None:
        check_redact_target(path, redact_to)
    report = PiiReport([], 0, [])
    for file in files:
        lines = read_lines(file)
        if lines is None:
            report.skipped.append(str(file))
            continue
        per_line = scan_lines(lines, str(file), ner)
        report.files += 1
        report.findings += [f for line in per_line for f in line]
        if redact_to is not None:
            target = redact_to if path.is_file() else redact_to / file.relative_to(path)
            redacted = "".join(redact(t, fs) for t, fs in zip(lines, per_line, strict=True))
            write_text_atomic(target, redacted)
    return report
