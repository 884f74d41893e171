"""PII detection: the checksums by hand, context deciding ambiguous numbers, file:line
positions, the redacted copy, the CLI, and the committed labelled set's scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tensorfab.audit.pii import (
    Finding,
    find_patterns,
    iban_ok,
    luhn_ok,
    redact,
    scan,
    scan_lines,
)
from tensorfab.cli.main import main

ROOT = Path(__file__).resolve().parents[3]


def _found(text: str) -> list[tuple[str, str]]:
    return [(f.type, f.text) for f in find_patterns(text)]


def test_luhn_by_hand() -> None:
    # 4111 1111 1111 1111: doubled 1s give 8*2 + 8*1 = 24 ... plus the 4 doubled (8) = 30
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    assert luhn_ok("79927398713")  # the classic worked example
    assert not luhn_ok("79927398710")


def test_iban_mod_97() -> None:
    assert iban_ok("GB82 WEST 1234 5698 7654 32")  # ECBS's example IBAN
    assert iban_ok("DE89370400440532013000")
    assert not iban_ok("GB82 WEST 1234 5698 7654 33")
    assert not iban_ok("GB82")


def test_each_pattern_type_is_found_with_its_span() -> None:
    text = "mail a.b@example.org, IBAN DE89370400440532013000, from 192.0.2.7"
    assert _found(text) == [
        ("EMAIL", "a.b@example.org"),
        ("IBAN", "DE89370400440532013000"),
        ("IP", "192.0.2.7"),
    ]
    assert _found("card 4111 1111 1111 1111 and phone +44 20 7946 0958") == [
        ("CREDIT_CARD", "4111 1111 1111 1111"),
        ("PHONE", "+44 20 7946 0958"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Employee ID 0612345678 joined",  # an identity number, not a phone
        "Order number 4111111111111111 shipped",  # Luhn-valid, but an order number
        "Card 4111 1111 1111 1112 was rejected",  # fails Luhn: and is not a phone either
        "Reference GB82 WEST 1234 5698 7654 33",  # fails mod 97: its digits are no phone
        "version 10.2.0.1 is out",  # four numbers with dots after "version"
        "scores 300.1.2.3",  # an octet above 255
        "Meeting on 2024-03-15 at 14:30.",  # a date
    ],
)
def test_hard_negatives(text: str) -> None:
    assert _found(text) == []


def test_context_makes_a_bare_number_a_phone() -> None:
    assert _found("phone: 0612345678") == [("PHONE", "0612345678")]
    assert _found("lot 0612345678") == []


def test_redact_replaces_each_finding_by_its_type() -> None:
    text = "x a@example.com y 192.0.2.1"
    assert redact(text, find_patterns(text)) == "x [EMAIL] y [IP]"
    assert redact("abc", [Finding("PER", 0, 1, "a")]) == "[PER]bc"


def test_scan_gives_file_line_and_writes_the_redacted_tree(tmp_path: Path) -> None:
    src = tmp_path / "notes"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("nothing\nmail bob@example.com\n", encoding="utf-8")
    (src / "sub" / "b.txt").write_text("IP 203.0.113.9 and 203.0.113.10\n", encoding="utf-8")
    (src / "blob.bin").write_bytes(b"\xff\xfe\x00binary")
    report = scan(src, tmp_path / "out")
    where = [(Path(f.file).name, f.line, f.type) for f in report.findings]
    assert where == [("a.txt", 2, "EMAIL"), ("b.txt", 1, "IP"), ("b.txt", 1, "IP")]
    assert report.counts() == {"EMAIL": 1, "IP": 2}
    assert report.files == 2 and report.skipped == [str(src / "blob.bin")]
    assert (tmp_path / "out/a.txt").read_text() == "nothing\nmail [EMAIL]\n"
    assert (tmp_path / "out/sub/b.txt").read_text() == "IP [IP] and [IP]\n"


def test_cli_json_and_a_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "x.txt"
    f.write_text("call +1 555 234 5678\n", encoding="utf-8")
    assert main(["audit", "pii", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["counts"] == {"PHONE": 1}
    assert out["findings"][0]["line"] == 1 and out["findings"][0]["start"] == 5
    assert main(["audit", "pii", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nope'}: no such file or folder"


def test_the_committed_labelled_set_scores_at_least_0_95() -> None:
    """The set (benchmarks/data/pii) was committed before the detector and is not edited."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from pii_score import SET, score
    finally:
        sys.path.pop(0)
    lines = SET.read_text(encoding="utf-8").splitlines()
    negatives = [line for line in lines if not json.loads(line)["entities"]]
    assert len(lines) >= 500 and len(negatives) >= 150
    overall = score()["all"]
    assert overall["precision"] >= 0.95 and overall["recall"] >= 0.95


def test_ner_names_join_the_patterns_where_they_overlap_none() -> None:
    def ner(lines: list[str]) -> list[list[Finding]]:  # what a PER/LOC model would answer
        assert lines == ["Ann Lee: ann@example.com\n"]
        return [[Finding("PER", 0, 7, "Ann Lee"), Finding("ORG", 9, 12, "ann")]]

    (line,) = scan_lines(["Ann Lee: ann@example.com\n"], "f.txt", ner)
    assert [(f.type, f.text, f.file, f.line) for f in line] == [
        ("PER", "Ann Lee", "f.txt", 1),
        ("EMAIL", "ann@example.com", "f.txt", 1),  # the ORG inside the address is dropped
    ]


def _redact_cli(src: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "pii", str(src), "--redact", str(out)])
    return code, capsys.readouterr().err.strip()


def test_redact_never_overwrites_the_input_or_an_existing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = b"mail me at a@example.org\n"
    f, other = tmp_path / "pii.txt", tmp_path / "afile.txt"
    f.write_bytes(original)
    other.write_bytes(b"keep\n")
    assert _redact_cli(f, f, capsys) == (
        2,
        f"error: --redact {f}: is the input itself (the originals would be lost)",
    )
    assert _redact_cli(f, other, capsys) == (
        2,
        f"error: --redact {other}: exists (pick a new path; nothing is replaced)",
    )
    assert _redact_cli(f, tmp_path, capsys) == (
        2,
        f"error: --redact {tmp_path}: is a folder (a file's copy is a file)",
    )
    assert _redact_cli(f, other / "sub.txt", capsys) == (
        2,
        f"error: --redact {other / 'sub.txt'}: {other} is not a folder",
    )
    assert f.read_bytes() == original and other.read_bytes() == b"keep\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile.txt", "pii.txt"]


def test_redact_refuses_the_input_folder_inside_it_and_a_non_empty_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, full = tmp_path / "notes", tmp_path / "full"
    (src / "a").mkdir(parents=True)
    full.mkdir()
    (full / "x").write_bytes(b"x")
    (src / "a" / "one.txt").write_bytes(b"call +1 555 234 5678\n")
    assert _redact_cli(src, src, capsys)[1] == (
        f"error: --redact {src}: is the input itself (the originals would be lost)"
    )
    assert _redact_cli(src, src / "red", capsys)[1] == (
        f"error: --redact {src / 'red'}: is inside the input folder {src}"
    )
    assert _redact_cli(src, full, capsys) == (2, f"error: --redact {full}: folder is not empty")
    assert (src / "a" / "one.txt").read_bytes() == b"call +1 555 234 5678\n"
    assert sorted(p.name for p in src.rglob("*")) == ["a", "one.txt"]
    (tmp_path / "empty").mkdir()  # an empty folder is a fine target
    assert _redact_cli(src, tmp_path / "empty", capsys)[0] == 0
    assert (tmp_path / "empty/a/one.txt").read_text() == "call [PHONE]\n"
