"""DP-SGD's parts and the membership-inference arithmetic, on hand-made inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tensorfab.audit.privacy import attack_auc, bootstrap_ci
from tensorfab.data.batching import TensorBatches
from tensorfab.errors import TensorfabError
from tensorfab.spec import parse_spec

opacus = pytest.importorskip("opacus")

from tensorfab.engine.privacy import PoissonBatches, Privacy, noise_for  # noqa: E402
from tensorfab.spec.schema import PrivacySpec  # noqa: E402


def test_attack_auc_counts_pairs_and_half_ties() -> None:
    # pairs (member < non-member): 0.1<0.3, 0.1<0.5, 0.2<0.3, 0.2<0.5; 0.5=0.5 is a tie
    assert attack_auc(np.array([0.1, 0.2, 0.5]), np.array([0.3, 0.5])) == pytest.approx(4.5 / 6)
    assert attack_auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 0.0


def test_attack_auc_refuses_an_empty_set() -> None:
    with pytest.raises(TensorfabError, match="one set is empty"):
        attack_auc(np.array([]), np.array([1.0]))


def test_bootstrap_ci_brackets_the_auc_and_collapses_when_separated() -> None:
    rng = np.random.default_rng(1)
    m, n = rng.normal(0.0, 1.0, 300), rng.normal(0.5, 1.0, 300)
    low, high = bootstrap_ci(m, n, rounds=300)
    assert low < attack_auc(m, n) < high
    assert 0.02 < high - low < 0.15
    assert bootstrap_ci(np.zeros(5), np.ones(5), rounds=50) == (1.0, 1.0)


def _spec(**train: object) -> None:
    raw = {"train": {"privacy": {"epsilon": 3.0}, **train}}
    parse_spec(raw, source="spec.yaml")


def test_spec_refuses_privacy_with_settings_it_cannot_honour() -> None:
    with pytest.raises(TensorfabError) as err:
        _spec(compile=True, clip_grad_norm=1.0)
    assert "train.privacy cannot be combined with train.compile, train.clip_grad_norm" in str(
        err.value
    )
    with pytest.raises(TensorfabError, match=r"exactly one of train\.privacy\.epsilon"):
        parse_spec({"train": {"privacy": {"epsilon": 3.0, "noise_multiplier": 1.0}}})
    _spec()  # alone it is accepted


def _batches(n: int = 1000, batch: int = 50) -> TensorBatches:
    x = torch.arange(n, dtype=torch.float32)
    return TensorBatches((x, x.long()), batch, device=torch.device("cpu"), shuffle=True)


def test_poisson_batches_are_a_pure_function_of_seed_and_epoch() -> None:
    pb = PoissonBatches(_batches(), seed=3)
    assert len(pb) == 20 and pb.sample_rate == 0.05
    first = [b[1].tolist() for b in pb.epoch(0)]
    assert first == [b[1].tolist() for b in PoissonBatches(_batches(), seed=3).epoch(0)]
    assert [b[1].tolist() for b in pb.epoch(0, start_batch=7)] == first[7:]
    assert first != [b[1].tolist() for b in pb.epoch(1)]
    sizes = [len(b) for b in first]
    assert len(set(sizes)) > 1  # Poisson: the size varies from step to step
    assert 30 < sum(sizes) / len(sizes) < 70  # mean 50, sd of the mean ~1.6


def test_noise_for_a_target_epsilon_spends_at_most_it() -> None:
    spec = PrivacySpec(epsilon=3.0, delta=1e-5)
    noise = noise_for(spec, 0.05, 200)
    acc = opacus.accountants.RDPAccountant()
    acc.history = [(noise, 0.05, 200)]
    assert 2.9 < acc.get_epsilon(1e-5) <= 3.0
    assert noise_for(PrivacySpec(noise_multiplier=1.3), 0.05, 200) == 1.3


def test_privacy_state_round_trips_epsilon_and_noise() -> None:
    def make() -> Privacy:
        gen = torch.Generator().manual_seed(0)
        return Privacy(
            PrivacySpec(noise_multiplier=1.0), 1.0, 0.1, opacus.accountants.RDPAccountant(), gen
        )

    a = make()
    assert a.epsilon() == 0.0
    for _ in range(30):
        a.step()
    torch.randn(5, generator=a.generator)
    b = make()
    b.load_state_dict(a.state_dict())
    assert b.epsilon() == a.epsilon() > 0
    assert torch.equal(torch.randn(5, generator=a.generator), torch.randn(5, generator=b.generator))
    assert b.summary()["steps"] == 30


def test_audit_privacy_refuses_a_flag_below_one() -> None:
    import argparse

    from tensorfab.cli.audit_privacy import run

    args = argparse.Namespace(model="m", rounds=0, batch_size=512, seed=0, out=None, json=False)
    with pytest.raises(TensorfabError, match="--rounds 0: must be at least 1"):
        run(args)


def test_cached_epsilon_equals_the_accountants_own() -> None:
    acc = opacus.accountants.RDPAccountant()
    acc.history = [(1.1, 0.25, 8), (1.1, 0.25, 3)]  # two entries, one cached one-step RDP
    private = Privacy(PrivacySpec(epsilon=3.0), 1.1, 0.25, acc, torch.Generator())
    assert private.epsilon() == acc.get_epsilon(1e-5)  # bitwise: the same sum of the same terms
