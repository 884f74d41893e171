"""Every option of every command and sub-command shows its default in ``--help`` (issue 21:
``--port``, ``--samples``, ``--tolerance``, ``--clients`` left them out)."""

from __future__ import annotations

import argparse

import pytest

from tensorfab.cli.main import COMMANDS, build_parser, parsers_in, shows_default


def _command_parsers(command: str) -> list[argparse.ArgumentParser]:
    top = build_parser(command)
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return parsers_in(sub.choices[command])


def _undocumented(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    missing = []
    for action in parser._actions:
        if not shows_default(action):
            continue
        shown = formatter._expand_help(action)
        said = f"(default: {action.default})" in shown or "default" in (action.help or "")
        if not said:
            missing.append(f"{parser.prog} {'/'.join(action.option_strings)}: {shown!r}")
    return missing


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_default_is_in_the_help(command: str) -> None:
    parsers = _command_parsers(command)
    assert [m for p in parsers for m in _undocumented(p)] == []


@pytest.mark.parametrize(
    ("command", "words", "shown"),
    [
        ("export", [], "(default: 512)"),  # --samples
        ("export", [], "(default: 0.01)"),  # --tolerance
        ("serve", [], "(default: 8000)"),  # --port
        ("perf", [], "(default: 32)"),  # --clients
    ],
)
def test_the_options_a_newcomer_missed_show_their_defaults(
    command: str, words: list[str], shown: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser(command).parse_args([command, *words, "--help"])
    assert shown in capsys.readouterr().out


def test_demo_help_promises_no_speed_up_on_a_cpu_only_machine(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        build_parser("demo").parse_args(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "with a GPU present, also time one epoch on CPU and GPU" in text
    assert "show CPU vs GPU speed-up" not in text
    assert "(default: 15, the demo job's)" in text
