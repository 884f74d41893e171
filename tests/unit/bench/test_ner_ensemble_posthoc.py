"""The NER ensemble benchmark's decode: members' word emissions averaged, their CRF weights
averaged, Viterbi under IOB2's rule; answers computed by hand."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

from tensorfab.models.crf import viterbi

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "ner_ensemble_posthoc.py"
CLASSES = ["O", "B-PER", "I-PER"]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ner_ensemble_posthoc", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


ENSEMBLE = _script()


def _members() -> tuple[list[torch.Tensor], torch.Tensor, list[torch.Tensor]]:
    """Two members, two rows: 3 words, and 1 word (then padding)."""
    a = torch.tensor(
        [[[0.0, 2, 3], [1, 0, 2], [2, 0, 0]], [[1, 0, 5], [9, 9, 9], [9, 9, 9]]]
    )  # [B=2, W=3, C=3]
    b = torch.tensor([[[2.0, 0, 0], [0, 0, 2], [0, 2, 0]], [[0, -1, 5], [-9, 9, 9], [9, -9, 9]]])
    mask = torch.tensor([[True, True, True], [True, False, False]])
    wa, wb = torch.zeros(5, 3), torch.zeros(5, 3)  # rows 0-2 tag -> tag, 3 start, 4 end
    wa[1, 2], wa[2, 0] = 1.0, 1.0  # A: B-PER -> I-PER +1, I-PER -> O +1
    wb[2, 0] = -3.0  # B: I-PER -> O -3; the mean: B->I +0.5, I->O -1
    return [a, b], mask, [wa, wb]


def test_ensemble_decodes_the_mean_emissions_with_the_mean_transitions() -> None:
    emissions, mask, weights = _members()
    # row 0, mean emissions per word (O, B, I): (1, 1, 1.5), (0.5, 0, 2), (1, 1, 0).
    # I-PER may not start, nor follow O. B I B: 1 + 2 + 1 + 0.5 (B->I) + 0 (I->B) = 4.5
    # beats B I O: 4 + 0.5 - 1 = 3.5, B I I: 3 + 0.5 = 3.5, O O O / O O B / B O O: 2.5.
    # row 1 (one word), mean (0.5, -0.5, 5): I-PER may not start, so O.
    assert ENSEMBLE.ensemble_decode(emissions, mask, weights, CLASSES) == [[1, 2, 1], [0]]


def test_the_mean_transitions_change_the_answer_of_one_members_weights() -> None:
    emissions, mask, weights = _members()
    # the same mean emissions with A's weights alone: B I O = 4 + 1 + 1 = 6 > B I B = 5
    only_a = ENSEMBLE.ensemble_decode(emissions, mask, [weights[0], weights[0]], CLASSES)
    assert only_a == [[1, 2, 0], [0]]


def test_one_member_decodes_as_the_task_does() -> None:
    emissions, mask, weights = _members()
    alone = ENSEMBLE.ensemble_decode(emissions[:1], mask, weights[:1], CLASSES)
    # A alone: B I O = 2 + 2 + 2 + 1 + 1 = 8 beats B I B = 2 + 2 + 0 + 1 = 5
    assert alone == viterbi(emissions[0], mask, weights[0], CLASSES) == [[1, 2, 0], [0]]


def test_run_paths_are_stored_relative_to_the_checkout() -> None:
    assert ENSEMBLE.relative("/work/main/runs/ner-quality/x") == "runs/ner-quality/x"
    assert ENSEMBLE.relative("runs/ner-quality/x") == "runs/ner-quality/x"
