"""Recommendation on implicit feedback: a user id in, every item's score out, top-k answered.

Training batches are (user, positive item) pairs; the loss the model's registry entry names
samples its negatives on the device (``bpr``: one per positive, ``bce``: four, as NCF;
``in-batch``: the other positives of the batch). Evaluation batches are per user: a mask of
items to leave out (interactions of earlier splits) and a mask of held-out targets; every
other item is ranked (full ranking, RecBole's protocol) for Hit/NDCG/Recall/MRR@10, and the
NCF paper's sampled protocol (one held-out item among 99 sampled unseen ones) is reported
beside it as ``sampled99_*``. The inference graph takes user indices [B, 1] and answers all
item scores; the answer leaves out the user's training items unless asked, and an unknown
user gets the most popular items, with a note saying so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tensorfab.data.batching import TensorBatches
from tensorfab.data.movielens import Interactions, InteractionSplits, read_inter
from tensorfab.errors import TensorfabError
from tensorfab.metrics.ranking import ranking_metrics, top_k_hits
from tensorfab.models import model_entry
from tensorfab.tasks.base import (
    OUTPUT,
    Feed,
    Inputs,
    Placement,
    ServingLimits,
    Signature,
    TensorSpec,
    TokenCount,
    Workload,
    every_output,
    no_hf_form,
)
from tensorfab.tasks.flops import counted_flops
from tensorfab.tasks.registry import TASKS

K = 10
SAMPLED = 99  # the NCF paper's negatives per held-out item
BCE_NEGATIVES = 4
PREDICT_BATCH = 256
UNKNOWN_NOTE = "unknown user: the most popular items (score: training interactions)"
LOSSES = ("bpr", "bce", "in-batch", "softmax")


USER_NOISE = (0.0, 0.1, 0.25, 0.5)  # fractions of users answered as someone else


class _UserGraph(nn.Module):
    """user indices int64 [B, 1] -> scores of every item [B, num_items]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, users: torch.Tensor) -> torch.Tensor:
        return self.model(users[:, 0])


@dataclass
class Recommendation:
    classes: list[str]  # item index -> raw item id
    users: list[str]  # user index -> raw user id
    seen: list[list[int]]  # per user: training items (left out of answers)
    popularity: list[int]  # per item: training interactions
    loss_kind: str = "bpr"
    name: str = "recommendation"
    metric_names: tuple[str, ...] = (
        f"ndcg@{K}",
        f"hit@{K}",
        f"recall@{K}",
        f"mrr@{K}",
        f"sampled99_hit@{K}",
        f"sampled99_ndcg@{K}",
        "loss",
    )
    _user_index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.loss_kind not in LOSSES:
            raise TensorfabError(f"recommendation loss {self.loss_kind!r}: use one of {LOSSES}")
        self._user_index = {u: i for i, u in enumerate(self.users)}

    # --- training and evaluation -------------------------------------------------------
    def logits(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Training (user, item): scores of the items the loss needs; evaluation: all items."""
        if len(batch) != 2 or self.loss_kind == "softmax":
            return model(batch[0])
        users, positives = batch
        if self.loss_kind == "in-batch":
            return model.user_vectors(users) @ model.item_vectors(positives).T
        negatives = 1 if self.loss_kind == "bpr" else BCE_NEGATIVES
        sampled = torch.randint(0, len(self.classes), (len(users), negatives), device=users.device)
        return model.pairs(users, torch.cat([positives[:, None], sampled], dim=1))

    def loss(self, logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        logits = logits.float()
        if len(batch) != 2:  # all items: softmax cross-entropy of the held-out targets
            targets = batch[2].float()
            log_p = torch.log_softmax(logits, dim=1)
            return (-(log_p * targets).sum(1) / targets.sum(1).clamp(min=1)).mean()
        if self.loss_kind == "bpr":
            return nn.functional.softplus(logits[:, 1] - logits[:, 0]).mean()
        if self.loss_kind == "bce":
            labels = torch.zeros_like(logits)
            labels[:, 0] = 1.0
            return nn.functional.binary_cross_entropy_with_logits(logits, labels)
        # softmax: the positive among all items; in-batch: among the batch's positives
        labels = batch[1] if self.loss_kind == "softmax" else torch.arange(len(logits))
        return nn.functional.cross_entropy(logits, labels.to(logits.device))

    def eval_step(self, logits: torch.Tensor, batch: tuple[torch.Tensor, ...]) -> Any:
        """(per-user metrics, top-10 item indices): the second part is what parity reports
        compare between a runtime's answers and the reference's."""
        _, seen, targets, candidates = batch
        scores = logits.float().masked_fill(seen, -torch.inf)
        full = ranking_metrics(top_k_hits(scores, targets, K).cpu(), targets.sum(1).cpu())
        sampled = self._sampled(scores, candidates)
        top = scores.topk(min(K, scores.shape[1]), dim=1).indices.cpu()
        return {**full, **{f"sampled99_{k}": v for k, v in sampled.items()}}, top

    def _sampled(self, scores: torch.Tensor, candidates: torch.Tensor) -> dict[str, torch.Tensor]:
        """NCF's protocol on the candidates chosen once per split (``sampled_candidates``):
        the held-out item's rank among the user's 99 sampled unseen items."""
        valid = candidates[:, 1:] >= 0
        picked = scores.gather(1, candidates.clamp(min=0))
        neg_score = picked[:, 1:].masked_fill(~valid, -torch.inf)
        rank = (neg_score > picked[:, :1]).sum(1).cpu()  # 0: the held-out item ranks first
        hits = torch.zeros(len(candidates), K, dtype=torch.bool)
        inside = rank < K
        hits[inside, rank[inside]] = True
        return ranking_metrics(hits, torch.ones(len(candidates)))

    compared = every_output  # no output is padding

    def eval_scores(self, outputs: list[Any]) -> dict[str, Any]:
        names = [n for n in self.metric_names if n != "loss"]
        return {
            n: float(torch.cat([o[0][n] for o in outputs]).mean()) if outputs else 0.0
            for n in names
        }

    def config(self) -> dict[str, Any]:
        return {
            "users": list(self.users),
            # one line of item indices per user: 80k ints one per line made JSON writes of
            # the package cost 0.7 s, at every improved epoch
            "seen": [" ".join(map(str, s)) for s in self.seen],
            "popularity": list(self.popularity),
            "loss_kind": self.loss_kind,
        }

    # --- data ---------------------------------------------------------------------------
    def read_eval_data(self, meta: dict[str, Any], path: Path) -> Interactions:
        """A ``.inter`` file of held-out interactions, ranked against the training items."""
        del meta
        users, items = read_inter(path)
        item_index = {item: i for i, item in enumerate(self.classes)}
        unknown = sorted({u for u in users if u not in self._user_index})
        unknown += sorted({i for i in items if i not in item_index})
        if unknown:
            raise TensorfabError(f"{path}: ids the model was not trained on: {unknown[:5]}")
        ex_user = [u for u, s in enumerate(self.seen) for _ in s]
        ex_item = [i for s in self.seen for i in s]
        return Interactions(
            torch.tensor([self._user_index[u] for u in users]),
            torch.tensor([item_index[i] for i in items]),
            len(self.users),
            len(self.classes),
            (torch.tensor(ex_user, dtype=torch.long), torch.tensor(ex_item, dtype=torch.long)),
        )

    def eval_batches(self, data: Interactions, batch_size: int, device: torch.device) -> Any:
        return TensorBatches(eval_tensors(data), batch_size, device=device, shuffle=False)

    def take_samples(self, data: Interactions, index: torch.Tensor) -> Interactions:
        return data.subset(index)

    def input_lengths(self, data: Any) -> None:
        del data  # one user id per example
        return None

    # --- the inference graph ------------------------------------------------------------
    def signature(self) -> Signature:
        users = TensorSpec("users", "INT64", (1,))
        return [users], [TensorSpec(OUTPUT, "FP32", (len(self.classes),))]

    def graph(self, model: nn.Module) -> nn.Module:
        return _UserGraph(model).eval()

    def feed(self, batch: tuple[torch.Tensor, ...]) -> Feed:
        return {"users": batch[0][:, None].cpu().numpy()}

    def example_feed(self, lengths: Sequence[int], rng: np.random.Generator) -> Feed:
        return {"users": rng.integers(0, len(self.users), (len(lengths), 1), dtype=np.int64)}

    def quantize_options(self, onnx_path: Path) -> dict[str, Any]:
        """Weight products only: the scores' ranking is what matters."""
        del onnx_path
        return {"op_types_to_quantize": ["MatMul", "Gemm"], "extra_options": {}}

    # --- people's inputs and answers ----------------------------------------------------
    def read_inputs(self, items: list[str]) -> Inputs:
        """User ids; ``ID:all`` also answers items the user has already seen."""
        inputs = Inputs([], [])
        for item in items:
            user, _, flag = item.partition(":")
            if flag not in ("", "all"):
                raise TensorfabError(f"{item!r}: a user id, or ID:all to include seen items")
            self._add(inputs, item, user, flag == "all", None)
        return inputs

    def _add(
        self, inputs: Inputs, name: str, user: str, include_seen: bool, top_k: int | None
    ) -> None:
        index = self._user_index.get(user, -1)
        if index < 0:
            inputs.example_notes[len(inputs.names)] = [UNKNOWN_NOTE]
            inputs.notes.append(f"{name}: {UNKNOWN_NOTE}")
        inputs.data.append((index, include_seen, top_k))
        inputs.names.append(name)

    def decode_request(self, body: bytes, limits: ServingLimits) -> Inputs:
        """``{"instances": ["196", {"user": "196", "include_seen": true, "top_k": 10}]}``."""
        del limits
        try:
            instances = json.loads(body)["instances"]
        except (ValueError, KeyError, TypeError):
            raise TensorfabError('request body: expected {"instances": [user ids]}') from None
        if not isinstance(instances, list) or not instances:
            raise TensorfabError("request body: instances must be a non-empty list")
        inputs = Inputs([], [])
        for n, instance in enumerate(instances):
            user, seen, top_k = _instance(instance, n)
            self._add(inputs, user, user, seen, top_k)
        return inputs

    def input_batches(
        self, inputs: Inputs, batch_size: int | None = None
    ) -> Iterable[tuple[Feed, Any]]:
        size = batch_size or PREDICT_BATCH
        users = np.array([max(index, 0) for index, _, _ in inputs.data], dtype=np.int64)
        for start in range(0, len(users), size):
            yield {"users": users[start : start + size, None]}, start

    def rows(
        self, inputs: Inputs, key: Any, logits: torch.Tensor | np.ndarray, top_k: int = 10
    ) -> dict[int, dict[str, Any]]:
        scores = torch.as_tensor(np.asarray(logits), dtype=torch.float32)
        rows = {}
        for offset, row_scores in enumerate(scores):
            i = key + offset
            index, include_seen, k = inputs.data[i]
            rows[i] = self._row(inputs.names[i], index, include_seen, k or top_k, row_scores)
            if i in inputs.example_notes:
                rows[i]["notes"] = list(inputs.example_notes[i])
        return rows

    def _row(
        self, name: str, index: int, include_seen: bool, k: int, scores: torch.Tensor
    ) -> dict[str, Any]:
        if index < 0:
            scores = torch.tensor(self.popularity, dtype=torch.float32)
        elif not include_seen:
            scores = scores.clone()
            scores[self.seen[index]] = -torch.inf
        top = scores.topk(min(k, len(self.classes)))
        items = [
            {"item": self.classes[i], "score": float(s)}
            for i, s in zip(top.indices.tolist(), top.values.tolist(), strict=True)
            if s > -np.inf
        ]
        return {"input": name, "items": items}

    def serving_limits(self, version_dir: Path) -> ServingLimits:
        del version_dir
        return ServingLimits()

    def within(self, limits: ServingLimits) -> Recommendation:
        del limits
        return self

    # --- robustness ---------------------------------------------------------------------
    def hf_export(self, model: nn.Module, directory: Path) -> None:
        del model, directory
        raise no_hf_form(self.name)

    def robustness(
        self, model: nn.Module, data: Interactions, device: torch.device, seed: int = 0
    ) -> list[dict[str, Any]]:
        """Scores when a seeded fraction ``eps`` of the users is answered as a random other
        user (a mistaken or shared identity); a model whose answers are personal loses
        ranking quality as ``eps`` grows, popularity alone would not."""
        rows = []
        for eps in USER_NOISE:
            g = torch.Generator().manual_seed(seed)
            outputs = []
            with torch.no_grad():
                for batch in self.eval_batches(data, 1024, device).epoch(0):
                    users = batch[0]
                    swap = torch.rand(len(users), generator=g) < eps
                    other = torch.randint(0, data.num_users, (len(users),), generator=g)
                    asked = torch.where(swap.to(users.device), other.to(users.device), users)
                    logits = self.logits(model, (asked, *batch[1:]))
                    outputs.append(self.eval_step(logits, batch))
            name = "none" if eps == 0 else "user-swap"
            rows.append({"attack": name, "eps": eps, **self.eval_scores(outputs)})
        return rows

    # --- model FLOPs --------------------------------------------------------------------
    def forward_flops(self, model: nn.Module, count: TokenCount) -> float:
        """A training example scores its user against 2 items (positive and one negative)."""
        device = next(model.parameters()).device
        zeros = torch.zeros(1, dtype=torch.long, device=device)
        per_example = counted_flops(lambda: model.pairs(zeros, zeros[:, None].expand(1, 2)))
        return float(count.samples * per_example)


def sampled_candidates(
    users: torch.Tensor, seen: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """int64 [U, 1 + 99]: per user one held-out item, then up to 99 items the user never
    interacted with (-1 past the last), both chosen by a fixed hash of (user, item), so the
    choice depends neither on batching nor on order. Computed once per split."""
    items = torch.arange(seen.shape[1], device=seen.device)
    key = ((users[:, None] * 1_000_003 + items[None] * 7_919) % 1_000_033).float()
    positive = key.masked_fill(~targets, torch.inf).argmin(dim=1, keepdim=True)
    free = key.masked_fill(seen | targets, torch.inf)
    negatives = free.topk(min(SAMPLED, free.shape[1]), dim=1, largest=False).indices
    negatives = negatives.masked_fill(~free.gather(1, negatives).isfinite(), -1)
    return torch.cat([positive, negatives], dim=1)


def eval_tensors(data: Interactions) -> tuple[torch.Tensor, ...]:
    """A split's evaluation batch tensors: users, excluded and target masks, and the
    sampled protocol's candidates."""
    users, seen, targets = data.by_user()
    return users, seen, targets, sampled_candidates(users, seen, targets)


def _instance(instance: Any, n: int) -> tuple[str, bool, int | None]:
    """One request instance: a user id, or an object with user, include_seen, top_k."""
    if isinstance(instance, (str, int)) and not isinstance(instance, bool):
        return str(instance), False, None
    if not isinstance(instance, dict) or "user" not in instance:
        raise TensorfabError(f"request body: instances[{n}]: a user id or {{'user': id}}")
    top_k = instance.get("top_k")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 1):
        raise TensorfabError(f"request body: instances[{n}].top_k: a positive integer")
    return str(instance["user"]), bool(instance.get("include_seen", False)), top_k


def prepare_recommendation(
    splits: InteractionSplits, *, model_name: str = "mf-bpr", **_: Any
) -> Workload:
    """Interaction splits -> a workload; the model's registry entry names its loss."""
    train = splits.train
    seen: list[list[int]] = [[] for _ in splits.users]
    for u, i in zip(train.user.tolist(), train.item.tolist(), strict=True):
        seen[u].append(i)
    popularity = torch.bincount(train.item, minlength=len(splits.items)).tolist()
    loss_kind = model_entry(model_name).meta.get("loss", "bpr")
    task = Recommendation(list(splits.items), list(splits.users), seen, popularity, loss_kind)
    parts = {"train": train, "eval": splits.eval, "test": splits.test}

    def make_batches(split: str, batch_size: int, shuffle: bool, where: Placement) -> Any:
        data = parts[split]
        tensors = (data.user, data.item) if split == "train" else eval_tensors(data)
        shard = {"rank": where.rank, "world_size": where.world_size} if shuffle else {}
        return TensorBatches(
            tensors, batch_size, device=where.device, shuffle=shuffle, seed=where.seed, **shard
        )

    meta = {
        "labels": list(splits.items),
        "input": {"kind": "user", "num_users": len(splits.users), "dtype": "int64"},
        "task_config": task.config(),
    }
    sizes = {k: len(v) for k, v in parts.items()}
    args = {"num_users": len(splits.users), "num_items": len(splits.items)}
    return Workload(task, args, sizes, meta, make_batches, train_count=TokenCount(len(train)))


@TASKS.register("recommendation", prepare=prepare_recommendation)
def build_recommendation(
    classes: list[str],
    users: list[str],
    seen: list[str] | list[list[int]],
    popularity: list[int],
    loss_kind: str = "bpr",
    package_dir: str | None = None,
    input_spec: dict[str, Any] | None = None,
) -> Recommendation:
    del package_dir, input_spec  # everything is in task_config
    lists = [[int(i) for i in s.split()] if isinstance(s, str) else list(s) for s in seen]
    return Recommendation(list(classes), list(users), lists, popularity, loss_kind)
