"""``tensorfab predict``'s lines: an image row says what was done to the image."""

from __future__ import annotations

from tensorfab.cli.predict import format_row


def test_an_image_row_prints_its_notes_under_it() -> None:
    row = {"input": "d.png", "label": "7", "score": 0.9, "top": {"7": 0.9, "1": 0.1}}
    assert format_row(row) == "d.png\t7\t0.9000\t7:0.900  1:0.100"
    noted = {**row, "notes": ["inverted: light background", "fitted into 20x20 and centred"]}
    assert format_row(noted).splitlines()[1:] == [
        "  note: inverted: light background",
        "  note: fitted into 20x20 and centred",
    ]
