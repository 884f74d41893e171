"""Every shipped example reads its data where the others do: ``../shared/`` beside the
repository, or the cache ``tensorfab data fetch`` fills (issue 21: mnist-lenet.yaml said
``data/mnist`` while the CoNLL example said ``../shared/...``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
PLACES = ("../shared/data/", "~/.cache/tensorfab/data/")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_data_paths_follow_one_convention(path: Path) -> None:
    data = yaml.safe_load(path.read_text()).get("data", {})
    paths = {k: v for k, v in data.items() if k.endswith("path") and isinstance(v, str)}
    assert [f"{k}: {v}" for k, v in paths.items() if not v.startswith(PLACES)] == []


def test_the_mnist_examples_need_no_path_override() -> None:
    for name in ("mnist-lenet.yaml", "mnist-lenet-b512.yaml"):
        data = yaml.safe_load((EXAMPLES[0].parent / name).read_text())["data"]
        assert data["path"] == "../shared/data/mnist"
