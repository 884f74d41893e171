"""The perturbations tasks measure robustness with: FGSM and PGD against hand-computed
answers on a linear loss, character noise's seeding and alignment."""

from __future__ import annotations

import random

import torch

from tensorfab.data.text_types import TextExample, TokenExample
from tensorfab.tasks.robustness import char_noise, fgsm, pgd
from tensorfab.tasks.text_classification import TextClassification
from tensorfab.tasks.token_classification import TokenClassification

W = torch.tensor([1.0, -2.0, 0.5, -0.1])
X = torch.tensor([0.5, 0.5, 0.98, 0.02])


def _linear_loss(x: torch.Tensor) -> torch.Tensor:
    return (W * x).sum()  # gradient W: sign +, -, +, -


def test_fgsm_moves_each_pixel_eps_along_the_gradient_sign_within_0_1() -> None:
    adv = fgsm(_linear_loss, X, 0.1)
    assert torch.allclose(adv, torch.tensor([0.6, 0.4, 1.0, 0.0]))


def test_pgd_stays_in_the_eps_ball_and_reaches_its_corner_on_a_linear_loss() -> None:
    adv = pgd(_linear_loss, X, 0.1)
    # 10 steps of 0.025 would go 0.25: projection stops at eps, clipping at 0 and 1
    assert torch.allclose(adv, torch.tensor([0.6, 0.4, 1.0, 0.0]))
    assert (adv - X).abs().max() <= 0.1 + 1e-6


def test_char_noise_is_seeded_and_rate_zero_is_identity() -> None:
    text = "the quick brown fox jumps"
    assert char_noise(text, 0.0, random.Random(1)) == text
    a = char_noise(text, 0.5, random.Random(1))
    assert a == char_noise(text, 0.5, random.Random(1))
    assert a != text
    assert char_noise("a", 1.0, random.Random(3))  # a one-letter text is never emptied


def test_noisy_examples_keep_labels_and_word_count() -> None:
    rng = random.Random(0)
    token = TokenClassification(classes=["O", "B-PER", "I-PER"])
    ex = TokenExample(["Ann", "lives", "in", "Oslo"], ["B-PER", "O", "O", "O"])
    noisy = token.noisy(ex, 0.9, rng)
    assert noisy.tags == ex.tags and len(noisy.words) == 4 and all(noisy.words)
    text = TextClassification(classes=["neg", "pos"])
    out = text.noisy(TextExample("a fine film", "pos"), 0.9, rng)
    assert out.label == "pos" and out.text != "a fine film"
