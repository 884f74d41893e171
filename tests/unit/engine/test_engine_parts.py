"""The engine's small parts as pure logic: schedule, batching order, atomic checkpoints,
run-directory rules and the metrics log."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tensorfab.data.batching import TensorBatches
from tensorfab.engine import checkpoint as ckpt_mod
from tensorfab.engine.optim import create_optimizer, lr_factor
from tensorfab.engine.rundir import MetricsLog, check_run_dir, open_run_dir, read_metrics
from tensorfab.errors import TensorfabError
from tensorfab.spec import load_spec

CPU = torch.device("cpu")


def test_warmup_then_cosine_and_linear() -> None:
    assert lr_factor(0, total=10, warmup=2, kind="cosine") == pytest.approx(0.5)
    assert lr_factor(1, total=10, warmup=2, kind="cosine") == pytest.approx(1.0)
    assert lr_factor(2, total=10, warmup=2, kind="cosine") == pytest.approx(1.0)
    assert lr_factor(6, total=10, warmup=2, kind="cosine") == pytest.approx(0.5)
    assert lr_factor(10, total=10, warmup=2, kind="cosine") == pytest.approx(0.0)
    assert lr_factor(6, total=10, warmup=2, kind="linear") == pytest.approx(0.5)
    assert lr_factor(7, total=10, warmup=0, kind="constant") == 1.0


def test_optimizers_by_name() -> None:
    model = torch.nn.Linear(2, 2)
    assert isinstance(create_optimizer("adamw", model, lr=0.1), torch.optim.AdamW)
    sgd = create_optimizer("sgd", model, lr=0.1, momentum=0.5)
    assert sgd.param_groups[0]["momentum"] == 0.5


def _batches(n: int = 10, bs: int = 3, **kw: int) -> TensorBatches:
    x = torch.arange(n)
    return TensorBatches((x, x * 10), bs, device=CPU, shuffle=True, seed=7, **kw)


def test_epoch_order_is_a_function_of_seed_and_epoch() -> None:
    a, b = _batches(), _batches()
    first = [t[0].tolist() for t in a.epoch(0)]
    assert first == [t[0].tolist() for t in b.epoch(0)]
    assert first != [t[0].tolist() for t in a.epoch(1)]
    assert sorted(x for batch in first for x in batch) == list(range(10))
    assert len(a) == 4 and [len(x) for x in first] == [3, 3, 3, 1]


def test_resume_skips_exactly_the_batches_already_seen() -> None:
    full = [t[0].tolist() for t in _batches().epoch(2)]
    tail = [t[0].tolist() for t in _batches().epoch(2, start_batch=2)]
    assert tail == full[2:]


def test_ranks_get_disjoint_shards() -> None:
    r0 = [x for t in _batches(rank=0, world_size=2).epoch(0) for x in t[0].tolist()]
    r1 = [x for t in _batches(rank=1, world_size=2).epoch(0) for x in t[0].tolist()]
    assert len(r0) == len(r1) == 5
    assert sorted(r0 + r1) == list(range(10))


def test_a_crash_during_save_leaves_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "checkpoints" / "last.pt"
    ckpt_mod.save_checkpoint(path, {"step": 1})

    def dies_half_way(obj: object, f: Path) -> None:
        Path(f).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        ckpt_mod.save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert ckpt_mod.load_checkpoint(path) == {"step": 1}
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"garbage\n", "unpickling failed: Unsupported operand 103"),
        (b"", "empty or truncated file"),
        (b"PK\x03\x04 half a zip", "PytorchStreamReader failed reading zip archive"),
    ],
)
def test_unreadable_checkpoint_is_one_line_without_unsafe_advice(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    bad = tmp_path / "last.pt"
    bad.write_bytes(content)
    with pytest.raises(TensorfabError) as info:
        ckpt_mod.load_checkpoint(bad)
    message = str(info.value)
    assert message.startswith(f"{bad}: not a readable checkpoint ({reason}")
    assert "weights_only" not in message and "\n" not in message


def test_metrics_log_truncates_undone_work(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for step in (5, 10, 15):
        log.append({"kind": "train", "step": step})
    log.truncate_after(10)
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [5, 10]


def test_corrupt_metrics_log_names_the_line_and_is_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"kind": "train", "step": 5}\n\n{"step": 5, bad\n{"step": 15}\n')
    before = path.read_bytes()
    with pytest.raises(TensorfabError) as info:
        MetricsLog(path).truncate_after(10)
    assert str(info.value) == (
        f"{path}:3: not valid JSON (Expecting property name enclosed in double quotes)"
    )
    assert path.read_bytes() == before
    with pytest.raises(TensorfabError, match=r"metrics\.jsonl:3: not valid JSON"):
        read_metrics(path)


def _run_of(tmp_path: Path, name: str):
    return load_spec(None, [f"output.runs_dir={tmp_path / 'runs'}", f"output.name={name}"])


def test_resume_without_a_run_is_an_error_not_a_fresh_start(tmp_path: Path) -> None:
    with pytest.raises(TensorfabError) as info:
        check_run_dir(_run_of(tmp_path, "nonexist"), resume=True)
    assert str(info.value) == (
        f"{tmp_path / 'runs/nonexist'}: no run to resume (no checkpoints/last.pt)"
    )
    assert not (tmp_path / "runs").exists()


def test_resume_of_a_run_stopped_before_its_first_checkpoint_says_what_to_do(
    tmp_path: Path,
) -> None:
    spec = _run_of(tmp_path, "early")
    run = check_run_dir(spec, resume=False)
    open_run_dir(run, spec)
    with pytest.raises(TensorfabError) as info:
        check_run_dir(spec, resume=True)
    assert str(info.value) == (
        f"{run.path}: no run to resume (no checkpoints/last.pt); it stopped before its "
        "first checkpoint: remove it or start a new run with --name"
    )


def test_checking_the_run_dir_writes_nothing(tmp_path: Path) -> None:
    spec = _run_of(tmp_path, "fresh")
    run = check_run_dir(spec, resume=False)
    assert not run.path.exists()
    open_run_dir(run, spec)
    assert load_spec(run.path / "spec.yaml") == spec
    with pytest.raises(TensorfabError, match="already exists; pass --resume"):
        check_run_dir(spec, resume=False)


def test_guard_reads_the_mean_and_the_first_non_finite_step_at_log_time(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from tensorfab.engine.fit import _Guard
    from tensorfab.engine.state import TrainState

    guard = _Guard(torch.device("cpu"))
    for step, loss in enumerate([1.0, 2.0, 4.5], start=1):
        guard.observe(torch.tensor(loss, requires_grad=True) * 1.0, step)
    ctx = SimpleNamespace(run=SimpleNamespace(checkpoint=tmp_path / "last.pt"), info={})
    guard.check(ctx, TrainState())  # all finite: nothing raised
    assert guard.take_mean() == (2.5, 3) and guard.batches == 0  # (1 + 2 + 4.5) / 3
    for step, loss in ((4, 1.0), (5, float("inf")), (6, float("nan"))):
        guard.observe(torch.tensor(loss), step)
    with pytest.raises(TensorfabError, match=r"non-finite \(nan/inf\) at step 5 \(epoch 1\)"):
        guard.check(ctx, TrainState())
