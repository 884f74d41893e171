"""Intent detection with out-of-scope answers, on a transformer encoder.

One intent per query, as in text classification, plus a fallback answer (``oos``) for a
query that belongs to no intent. When the training split holds out-of-scope queries
(CLINC150: half of ``oos_train``), they are trained as one more output, after the intents
(``oos_class``); otherwise out-of-scope queries carry no loss. Three rules reject a query:
a threshold on the maximum softmax probability of the intents (``msp``), on their negative
energy (``energy``: logsumexp of the intents' logits), or the trained class winning the
argmax (``class``, only with ``oos_class``). Every rule, each score with every threshold,
is tried on the evaluation split of a job (CLINC150: ``val`` + the other half of
``oos_train``, encoded as :data:`CALIBRATE`); the best by the mean of in-scope accuracy
and OOS recall (the first of equals in the order msp, energy, class) becomes the task's
``oos_rule``, recorded in the package with the model it was chosen for. Other splits
(``val`` + ``oos_val``, a user's file) are only scored with it.

People's queries are answered with the top-k intents and their confidences (softmax over
the intents), the fallback when the rule rejects the query, and an ``ambiguous`` flag when
the two best intents are closer than ``ambiguity_margin`` (the spec's
``intents.ambiguity_margin``).

The model reads a query through the mean of its tokens' last hidden states (``pooling:
mean``, the form a sentence-embedding encoder such as all-MiniLM-L6-v2 was trained in;
``model.args.pooling: cls`` picks the Hugging Face pooler instead). The classifier starts
as the nearest class mean of the training queries' embeddings (the few-shot lever of
prototypical networks; ``intents.prototype_init: false`` starts it at random)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from tensorfab.data import load_eval_data
from tensorfab.data.text_types import TextExample, TextSplits
from tensorfab.errors import TensorfabError
from tensorfab.metrics import classification_scores
from tensorfab.tasks.base import Batch, Inputs, Placement, Workload, no_hf_form
from tensorfab.tasks.encoder_task import EncoderTask, prepare_text, rebuild
from tensorfab.tasks.prediction import softmax
from tensorfab.tasks.registry import TASKS

FALLBACK = "oos"
OUT = -1  # target of an out-of-scope query that is scored
CALIBRATE = -2  # target of an out-of-scope query the rule is chosen on
SCORES = ("msp", "energy")
CLASS_RULE = "class"  # the trained ``oos`` output wins the argmax
OOS_METRICS = ("in_scope_accuracy", "oos_recall", "oos_precision", "auroc", "fpr_at_95_tpr")
TPR = 0.95
POOLING = "mean"  # what the classifier reads (model.args.pooling overrides it)
PROTOTYPE_BATCH = 64
# BANKING77 10-shot, minilm-l6, the same run otherwise: validation accuracy 0.818 after one
# epoch from the class means, 0.276 from a random head (docs/intents.md)
PROTOTYPE_INIT = True


def confidence(logits: np.ndarray, score: str) -> np.ndarray:
    """Per-row in-scope confidence: max softmax probability or logsumexp (negative energy)."""
    z = np.asarray(logits, dtype=np.float64)
    top = z.max(axis=-1)
    lse = top + np.log(np.exp(z - top[..., None]).sum(axis=-1))
    return np.exp(top - lse) if score == "msp" else lse


def auroc(in_scores: np.ndarray, oos_scores: np.ndarray) -> float:
    """P(an OOS query scores below an in-scope one), ties counted half (Mann-Whitney)."""
    ordered = np.sort(np.asarray(in_scores, dtype=np.float64))
    oos = np.asarray(oos_scores, dtype=np.float64)
    above = len(ordered) - np.searchsorted(ordered, oos, side="right")
    ties = np.searchsorted(ordered, oos, side="right") - np.searchsorted(ordered, oos)
    return float((above + 0.5 * ties).sum() / (len(ordered) * len(oos)))


def fpr_at_tpr(in_scores: np.ndarray, oos_scores: np.ndarray, tpr: float = TPR) -> float:
    """Share of OOS queries accepted by the highest threshold that keeps ``tpr`` of in-scope."""
    ordered = np.sort(np.asarray(in_scores, dtype=np.float64))
    threshold = ordered[int(np.floor(len(ordered) * (1.0 - tpr) + 1e-9))]
    return float((np.asarray(oos_scores) >= threshold).mean())


def choose_threshold(scores: np.ndarray, correct: np.ndarray, is_oos: np.ndarray) -> tuple:
    """(threshold, objective): accept ``scores >= threshold``, maximising the mean of
    in-scope accuracy (a rejected in-scope query is wrong) and OOS recall.

    Candidates lie between neighbouring scores (and -inf: accept all), so a threshold is
    never a score itself; the lowest of equally good ones wins (fewest rejections)."""
    unique = np.unique(scores)
    candidates = np.concatenate([[-np.inf], (unique[:-1] + unique[1:]) / 2, [np.inf]])
    accept = scores[None, :] >= candidates[:, None]  # [K, N]
    objective = rule_objective(accept, correct, is_oos)
    best = int(np.argmax(objective))
    return float(candidates[best]), float(objective[best])


def rule_objective(accept: np.ndarray, correct: np.ndarray, is_oos: np.ndarray) -> np.ndarray:
    """Mean of in-scope accuracy (a rejected in-scope query is wrong) and OOS recall, per
    row of ``accept`` ([K, N] or [N])."""
    n_in, n_oos = max(int((~is_oos).sum()), 1), max(int(is_oos.sum()), 1)
    in_acc = (accept & correct & ~is_oos).sum(-1) / n_in
    recall = (~accept & is_oos).sum(-1) / n_oos
    return (in_acc + recall) / 2


def rule_confidence(logits: np.ndarray, score: str, n_intents: int) -> np.ndarray:
    """The in-scope confidence a rule looks at: ``msp``/``energy`` of the intents' logits,
    or for ``class`` the probability of any intent (1 - that of the trained ``oos``)."""
    if score == CLASS_RULE:
        return 1.0 - softmax(np.asarray(logits, dtype=np.float64))[..., n_intents]
    return confidence(logits[..., :n_intents], score)


def choose_rule(logits: np.ndarray, targets: np.ndarray, n_intents: int) -> dict[str, Any]:
    """The best rule on a split with OOS queries (negative targets); logits wider than
    ``n_intents`` hold the trained ``oos`` output, which adds the ``class`` rule."""
    is_oos = targets < 0
    correct = logits[:, :n_intents].argmax(-1) == targets
    best: dict[str, Any] = {}
    for score in SCORES:
        scores = rule_confidence(logits, score, n_intents)
        threshold, objective = choose_threshold(scores, correct, is_oos)
        if not best or objective > best["objective"]:
            best = {"score": score, "threshold": threshold, "objective": objective}
    if logits.shape[-1] > n_intents:
        accept = logits.argmax(-1) != n_intents
        objective = float(rule_objective(accept, correct, is_oos))
        if objective > best["objective"]:
            best = {"score": CLASS_RULE, "threshold": None, "objective": objective}
    return best


def oos_scores(logits: np.ndarray, targets: np.ndarray, preds: np.ndarray, rule: dict) -> dict:
    """In-scope accuracy, OOS recall/precision (preds: intent count = rejected), AUROC, FPR;
    ``rule["n_intents"]`` (default: the logits' width) says where the intents end."""
    n_intents = rule.get("n_intents", logits.shape[-1])
    is_oos, rejected = targets < 0, preds == n_intents
    scores = rule_confidence(logits, rule.get("score", "msp"), n_intents)
    has_both = bool(is_oos.any() and (~is_oos).any())
    return {
        "in_scope_accuracy": _mean(preds[~is_oos] == targets[~is_oos]),
        "oos_recall": _mean(rejected[is_oos]),
        "oos_precision": _mean(is_oos[rejected]),
        "auroc": auroc(scores[~is_oos], scores[is_oos]) if has_both else None,
        "fpr_at_95_tpr": fpr_at_tpr(scores[~is_oos], scores[is_oos]) if has_both else None,
    }


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


@dataclass
class IntentClassification(EncoderTask):
    name: str = "intent-classification"
    detect_oos: bool = False  # the data holds out-of-scope queries
    oos_rule: dict[str, Any] | None = None  # {"score", "threshold", "objective"}
    oos_class: bool = False  # the model has one more output: ``oos`` trained as a class
    ambiguity_margin: float = 0.1
    fallback: str = FALLBACK
    head = "sequence"
    data_format = "text"  # unused: read_eval_data reads the package's own format
    cut_unit = "texts"

    @property
    def metric_names(self) -> tuple[str, ...]:  # type: ignore[override]
        if self.detect_oos:
            return ("accuracy", *OOS_METRICS, "macro_f1", "loss")
        return ("accuracy", "macro_f1", "weighted_f1", "loss")

    def hf_export(self, model: nn.Module, directory: Path) -> None:
        del model, directory
        raise no_hf_form(self.name, "its out-of-scope rule and fallback are not in the network")

    def config(self) -> dict[str, Any]:
        return {
            **super().config(),
            "detect_oos": self.detect_oos,
            "oos_rule": self.oos_rule,
            "oos_class": self.oos_class,
            "ambiguity_margin": self.ambiguity_margin,
            "fallback": self.fallback,
        }

    def encode(self, examples: list[Any]) -> tuple[list[list[int]], list[int], int]:
        index = {c: i for i, c in enumerate(self.classes)}
        ids, cut = self.encode_texts([e.text for e in examples])
        return ids, [index.get(e.label, OUT) for e in examples], cut

    def encode_split(self, split: str, examples: list[Any]) -> tuple[list, list[int], int]:
        """The training split's OOS queries are the ``oos`` class (the output after the
        intents), the evaluation split's are the ones the rule is chosen on."""
        ids, labels, cut = self.encode(examples)
        self.detect_oos = self.detect_oos or OUT in labels
        if split == "train" and OUT in labels:
            self.oos_class = True
            labels = [len(self.classes) if label == OUT else label for label in labels]
        if split == "eval":
            labels = [CALIBRATE if label == OUT else label for label in labels]
        return ids, labels, cut

    def read_eval_data(self, meta: dict[str, Any], path: Path) -> list[Any]:
        """A user's file in the package's own data format (the fallback is a known label)."""
        examples, _ = load_eval_data(meta["data"]["spec"]["format"], str(path))
        unknown = sorted({e.label for e in examples} - {*meta["labels"], self.fallback})
        if unknown:
            raise TensorfabError(f"{path}: intents {unknown} are not among the model's intents")
        return examples

    def logits(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return model(input_ids=batch[1], attention_mask=batch[2]).logits  # [B, C]

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Cross-entropy over the trained classes (untrained OOS queries carry no loss)."""
        targets = batch[3]
        inside = (targets >= 0).float()
        each = nn.functional.cross_entropy(logits.float(), targets.clamp(min=0), reduction="none")
        return (each * inside).sum() / inside.sum().clamp(min=1.0)

    def eval_step(self, logits: torch.Tensor, batch: Batch) -> Any:
        """(targets, best intents, logits): parity compares the second; the rule needs all."""
        return batch[3].cpu(), logits.argmax(-1).cpu(), logits.float().cpu()

    def eval_scores(self, outputs: list[Any]) -> dict[str, Any]:
        targets = torch.cat([t for t, _, _ in outputs]).numpy()
        logits = torch.cat([z for _, _, z in outputs]).numpy()
        if (targets == CALIBRATE).any():
            self.oos_rule = choose_rule(logits, targets, len(self.classes))
        preds = self.decide(logits)
        if not self.detect_oos:
            return classification_scores(targets, preds, self.classes)
        wide = np.where(targets < 0, len(self.classes), targets)
        scores = classification_scores(wide, preds, [*self.classes, self.fallback])
        # one row/column more than ``classes`` (the fallback): not the plotted matrix
        scores["confusion_matrix_with_oos"] = scores.pop("confusion_matrix")
        rule = {**(self.oos_rule or {}), "n_intents": len(self.classes)}
        scores.update(oos_scores(logits, targets, preds, rule))
        if self.oos_rule is not None:
            scores["oos_rule"] = dict(self.oos_rule)
        return scores

    def decide(self, logits: np.ndarray) -> np.ndarray:
        """Best intent per row, or ``len(classes)`` (the fallback) where the rule rejects it."""
        n = len(self.classes)
        best = logits[:, :n].argmax(-1)
        if self.oos_rule is None:
            return best
        if self.oos_rule["score"] == CLASS_RULE:
            rejected = logits.argmax(-1) == n
        else:
            score = rule_confidence(logits, self.oos_rule["score"], n)
            rejected = score < self.oos_rule["threshold"]
        return np.where(rejected, n, best)

    def logits_shape(self) -> tuple[int, ...]:
        return (len(self.classes) + self.oos_class,)

    def placeholder(self, text: str) -> TextExample:
        return TextExample(text, self.classes[0])

    def rows(
        self, inputs: Inputs, key: Any, logits: torch.Tensor | np.ndarray, top_k: int = 3
    ) -> dict[int, dict[str, Any]]:
        z = torch.as_tensor(logits).float().numpy()
        probs, verdict = softmax(z[:, : len(self.classes)]), self.decide(z)
        return {
            i: self.intent_row(inputs.data[i], probs[r], int(verdict[r]), top_k)
            for r, i in enumerate(key[0].tolist())
        }

    def intent_row(self, text: str, probs: np.ndarray, verdict: int, top_k: int) -> dict:
        """The answer, the top-k intents with confidences (best first) and whether the top
        two are closer than ``ambiguity_margin``."""
        order = np.argsort(-probs, kind="stable")[: max(top_k, 2)]
        margin = float(probs[order[0]] - probs[order[1]]) if len(order) > 1 else 1.0
        rejected = verdict == len(self.classes)
        return {  # the shape of an image row (``predict`` prints input, label, score, top)
            "input": text,
            "label": self.fallback if rejected else self.classes[verdict],
            "score": float(probs[order[0]]),
            "top": {self.classes[c]: float(probs[c]) for c in order[: max(top_k, 1)]},
            "out_of_scope": bool(rejected),
            "ambiguous": margin < self.ambiguity_margin,
        }


@torch.no_grad()
def embed_batches(model: nn.Module, batches: Iterable[Batch]) -> tuple[torch.Tensor, ...]:
    """([N, H] pooled embeddings, [N] targets) of batches, the model in eval mode."""
    was_training = model.training
    model.eval()
    embedded = [(model.embed(b[1], b[2]), b[3]) for b in batches]
    model.train(was_training)
    return torch.cat([e for e, _ in embedded]), torch.cat([t for _, t in embedded])


def prototype_start(make_batches: Callable[..., Any]) -> Callable[[nn.Module], None]:
    """The workload's ``init_model``: the classifier set to the training queries' class
    means (``init_from_prototypes`` of a mean-pooled head), before the first step."""

    def start(model: nn.Module) -> None:
        init = getattr(model, "init_from_prototypes", None)
        if init is None:
            raise TensorfabError(
                "intents.prototype_init: the class-mean start needs the mean-pooled head "
                "(model.args.pooling: mean); with another head set intents.prototype_init: false"
            )
        device = next(model.parameters()).device
        batches = make_batches("train", PROTOTYPE_BATCH, False, Placement(device, resident="off"))
        init(*embed_batches(model, batches.epoch(0)))

    return start


def _prepare(
    splits: TextSplits, *, intents: dict[str, Any] | None = None, **options: Any
) -> Workload:
    """The text workload; with ``oos`` trained as a class the model gets one more output.
    ``intents``: the spec's task options (``ambiguity_margin``, ``prototype_init``)."""
    workload = prepare_text(IntentClassification, splits, **options)
    task = cast(IntentClassification, workload.task)
    opts = intents or {}
    task.ambiguity_margin = float(opts.get("ambiguity_margin", task.ambiguity_margin))
    workload.package_meta["task_config"] = task.config()
    workload.model_args["num_classes"] = len(task.classes) + task.oos_class
    workload.model_args["pooling"] = POOLING
    if opts.get("prototype_init", PROTOTYPE_INIT):
        workload.init_model = prototype_start(workload.make_batches)
    return workload


@TASKS.register("intent-classification", prepare=_prepare)
def build_intent_classification(
    classes: list[str],
    max_length: int = 512,
    detect_oos: bool = False,
    oos_rule: dict[str, Any] | None = None,
    oos_class: bool = False,
    ambiguity_margin: float = 0.1,
    fallback: str = FALLBACK,
    package_dir: str | None = None,
    encoder: str | None = None,
    input_spec: dict[str, Any] | None = None,
) -> IntentClassification:
    del input_spec  # the tokenizer and max_length say it all
    task = rebuild(IntentClassification, classes, max_length, package_dir, encoder)
    return cast(
        IntentClassification,
        dataclasses.replace(
            task,
            detect_oos=detect_oos,
            oos_rule=oos_rule,
            oos_class=oos_class,
            ambiguity_margin=ambiguity_margin,
            fallback=fallback,
        ),
    )
