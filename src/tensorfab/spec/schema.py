"""Pydantic models that a job spec YAML maps onto, one to one.

Every model forbids unknown keys (a typo is an error, not a silently ignored field) and
is frozen: the resolved spec saved in a run directory is exactly what ran.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from tensorfab.spec.names import plain_name

Device = str  # auto | cpu | cuda | cuda:N | mps; checked by the hardware layer at run time
Precision = Literal["auto", "fp32", "tf32", "bf16", "fp16"]


def _yaml_switch(value: Any) -> Any:
    """YAML reads a bare ``on``/``off`` as true/false; a tri-state switch takes them back."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


# auto | on | off, also when YAML or --set turned on/off into a boolean
Switch = Annotated[Literal["auto", "on", "off"], BeforeValidator(_yaml_switch)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    """Where the examples come from and how they are batched."""

    format: Literal[
        "digits",
        "idx",
        "imagefolder",
        "conll",
        "text",
        "csv-table",
        "movielens",
        "banking77",
        "clinc150",
    ] = "digits"
    path: str | None = Field(None, description="file or folder; not used by 'digits'")
    eval_path: str | None = Field(None, description="evaluation file (conll, text)")
    test_path: str | None = Field(None, description="separate test data")
    text_column: str = "text"
    label_column: str = "label"
    text_format: Literal["auto", "csv", "tsv", "jsonl", "phrasebank"] = "auto"
    dedupe: bool = Field(False, description="drop duplicate (text, label) rows first")
    split_fractions: tuple[float, float, float] = Field(
        (0.8, 0.1, 0.1), description="train/eval/test of one text file (stratified, seeded)"
    )
    max_length: int | None = Field(None, ge=8, description="tokens; default: the encoder's")
    length_bucketing: bool = Field(False, description="batch sequences of similar length")
    packing: bool = Field(
        False,
        description="token-classification training: pack each batch's sentences into rows "
        "of up to max_length tokens, attention kept within each sentence",
    )
    context: bool = Field(
        False,
        description="token-classification: each sentence read with its neighbours in the "
        "document as context, up to max_length tokens; only its own words are scored",
    )
    label_pieces: Literal["first", "all"] = Field(
        "first",
        description="token-classification: which sub-tokens of a word are trained; all: the "
        "later ones towards I-X (Hugging Face's label_all_tokens), and predict reads people's "
        "words as the tokenizer cuts them, as a Hugging Face NER pipeline does",
    )
    image_size: int | None = Field(None, ge=8, le=1024, description="resize (imagefolder)")
    channels: Literal[1, 3] | None = None
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0, description="digits/imagefolder split")
    val_fraction: float = Field(
        0.0, ge=0.0, lt=0.5, description="validation carved from train; 0 evaluates on test"
    )
    split_seed: int = 0
    limit_train: int | None = Field(None, ge=1, description="use only the first N train rows")
    limit_eval: int | None = Field(None, ge=1)
    limit_test: int | None = Field(None, ge=1)
    per_class_limit: int | None = Field(None, ge=1, description="intents: N train rows each")
    batch_size: int = Field(64, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    device_resident: Switch = "auto"

    @model_validator(mode="after")
    def _path_needed(self) -> DataSpec:
        if self.format != "digits" and not self.path:
            raise ValueError(f"data.path is required for format {self.format!r}")
        return self


class ModelSpec(_Strict):
    """A registry name plus keyword arguments for its builder (never an import path)."""

    name: str = "lenet"
    args: dict[str, Any] = Field(default_factory=dict)
    head: Literal["linear", "crf"] = Field(
        "linear",
        description="token-classification: crf decodes tags with Viterbi under IOB2's rule",
    )

    @field_validator("args")
    @classmethod
    def _no_ensemble(cls, args: dict[str, Any]) -> dict[str, Any]:
        if "ensemble" in args:
            raise ValueError(
                "ensemble: an ensemble is made of finished runs (`tensorfab ensemble RUN RUN "
                "--out DIR`), not trained as one model"
            )
        return args


class EarlyStoppingSpec(_Strict):
    patience: int | None = Field(None, ge=1, description="evaluations without improvement")
    min_delta: float = Field(0.0, ge=0.0)


class FairnessSpec(_Strict):
    """Post-processing for a fairness constraint: per-group thresholds fitted on validation."""

    constraint: Literal["demographic_parity", "equalized_odds"] = Field(
        "demographic_parity",
        description="equal selection rates, or equal TPR and FPR, across the groups",
    )
    sensitive: str = Field(..., description="the categorical column that names the group")
    cut: float = Field(
        0.8,
        gt=0.0,
        le=1.0,
        description="demographic_parity: cut the validation selection-rate gap by at least "
        "this fraction at the least accuracy cost (1.0: equal rates)",
    )


class PrivacySpec(_Strict):
    """DP-SGD (Opacus): per-sample clipping, Gaussian noise, Poisson sampling, RDP accounting."""

    epsilon: float | None = Field(
        None, gt=0.0, description="target epsilon at the end of training; sets the noise"
    )
    noise_multiplier: float | None = Field(
        None, gt=0.0, description="noise std / max_grad_norm, instead of a target epsilon"
    )
    delta: float = Field(1e-5, gt=0.0, lt=1.0)
    max_grad_norm: float = Field(1.0, gt=0.0, description="per-sample gradient clipping norm")

    @model_validator(mode="after")
    def _one_of(self) -> PrivacySpec:
        if (self.epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("give exactly one of train.privacy.epsilon, noise_multiplier")
        return self


class TrainSpec(_Strict):
    """The training loop's knobs; defaults are the GPU tutorials' set-up."""

    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps")
    device: Device = "auto"
    precision: Precision = Field(
        "auto",
        description="auto: bf16 on a GPU that has it; on a CPU bf16 autocast where its measured "
        "bf16 peak and a probe of the model say it pays, else fp32",
    )
    threads: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="CPU intra-op threads; auto: the job's cores, else the cores free now "
        "(one for a model under 1M parameters)",
    )
    channels_last: Switch = Field(
        "auto",
        description="4-D weights in channels-last layout (oneDNN's); auto: on a CPU without "
        "DP-SGD, where it made LeNet's step 1.6x faster (no effect without convolutions)",
    )
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = Field(
        "default",
        description="torch.compile mode; reduce-overhead replays CUDA graphs, for small "
        "launch-bound models on a GPU",
    )
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="sgd only")
    fused: Switch = Field(
        "auto",
        description="torch's fused optimizer step; auto: on a GPU, and on a CPU without DP-SGD",
    )
    scheduler: Literal["constant", "cosine", "linear"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    layer_lr_decay: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="transformer encoders: layer i of L learns at lr * decay^(L - i)",
    )
    grad_accum: int = Field(1, ge=1)
    clip_grad_norm: float | None = Field(None, gt=0.0)
    average_last: int | None = Field(
        None,
        ge=2,
        description="average the weights (parameters, floating buffers) over the ends of the "
        "last k epochs; packaged only if they beat the best epoch on train.metric",
    )
    metric: str = Field("accuracy", description="selects the best model and early stopping")
    metric_mode: Literal["max", "min"] = "max"
    early_stopping: EarlyStoppingSpec = Field(default_factory=EarlyStoppingSpec)
    checkpoint_every_steps: int | None = Field(
        None, ge=1, description="also checkpoint mid-epoch every N steps"
    )
    log_every_steps: int = Field(50, ge=1)
    fairness: FairnessSpec | None = Field(
        None, description="tabular-classification: thresholds per group, stored in the package"
    )

    privacy: PrivacySpec | None = Field(None, description="train with DP-SGD (needs opacus)")

    @model_validator(mode="after")
    def _mode_needs_compile(self) -> TrainSpec:
        if self.compile_mode != "default" and not self.compile:
            raise ValueError(f"train.compile_mode {self.compile_mode!r} needs train.compile: true")
        return self

    @model_validator(mode="after")
    def _average_within_epochs(self) -> TrainSpec:
        if self.average_last is not None and self.average_last > self.epochs:
            raise ValueError(
                f"train.average_last {self.average_last} is more than train.epochs "
                f"{self.epochs}: it averages the ends of that many of the last epochs"
            )
        return self

    @field_validator("device")
    @classmethod
    def _device_form(cls, d: str) -> str:
        ok = d in ("auto", "cpu", "cuda", "mps") or (d.startswith("cuda:") and d[5:].isdigit())
        if not ok:
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, not {d!r}")
        return d


class IntentsSpec(_Strict):
    """intent-classification: how answers are given (recorded in the package's task_config)."""

    ambiguity_margin: float = Field(
        0.1, ge=0.0, le=1.0, description="flag an answer whose two best intents are closer"
    )
    prototype_init: bool = Field(
        True,
        description="start the classifier as the nearest class mean of the training queries' "
        "embeddings (needs the default mean pooling); false: a random start",
    )


MLFLOW_SCHEMES = ("file:", "sqlite:", "http://", "https://")


class OutputSpec(_Strict):
    runs_dir: str = "runs"
    name: str | None = Field(None, description="run directory name; default: the job name")

    @field_validator("name")
    @classmethod
    def _one_folder(cls, name: str | None) -> str | None:
        return None if name is None else plain_name(name)

    mlflow: str | None = Field(
        None,
        description="MLflow tracking URI to log the run to as well (file:./mlruns or "
        "sqlite:///mlflow.db work offline); needs the track extra",
    )

    @field_validator("mlflow")
    @classmethod
    def _tracking_uri(cls, uri: str | None) -> str | None:
        if uri is not None and not uri.startswith(MLFLOW_SCHEMES):
            raise ValueError(
                f"must be a tracking URI starting with {', '.join(MLFLOW_SCHEMES)}, not {uri!r}"
            )
        return uri


class JobSpec(_Strict):
    """A whole job: what to train, on what data, how, and where to write it."""

    name: str = "job"
    task: Literal[
        "image-classification",
        "token-classification",
        "text-classification",
        "tabular-classification",
        "recommendation",
        "intent-classification",
    ] = "image-classification"
    seed: int = 0
    data: DataSpec = Field(default_factory=DataSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    intents: IntentsSpec | None = Field(None, description="intent-classification options")
    output: OutputSpec = Field(default_factory=OutputSpec)

    @field_validator("name")
    @classmethod
    def _one_folder(cls, name: str) -> str:
        return plain_name(name)

    @model_validator(mode="after")
    def _format_fits_task(self) -> JobSpec:
        wanted = TASK_FORMATS[self.task]
        if self.data.format not in wanted:
            raise ValueError(
                f"data.format {self.data.format!r} does not fit task {self.task!r} "
                f"(use {' or '.join(wanted)})"
            )
        if self.train.fairness is not None and self.task != "tabular-classification":
            raise ValueError(f"train.fairness: only for tabular-classification, not {self.task!r}")
        if self.intents is not None and self.task != "intent-classification":
            raise ValueError(f"intents: only for intent-classification, not {self.task!r}")
        _check_token_options(self)
        _check_privacy(self)
        return self


def _check_token_options(spec: JobSpec) -> None:
    """Packing, document context and the CRF head are token classification's alone."""
    named = {
        # a packed row has one [CLS]: a per-sequence label would need one per sequence
        "data.packing": spec.data.packing,
        "data.context": spec.data.context,
        "model.head=crf": spec.model.head == "crf",
        "data.label_pieces=all": spec.data.label_pieces == "all",
    }
    on = [name for name, value in named.items() if value]
    if on and spec.task != "token-classification":
        raise ValueError(f"{on[0]}: only for token-classification, not {spec.task!r}")
    packing = [name for name in on if name != "data.label_pieces=all"]
    if spec.data.packing and len(packing) > 1:
        # context rows are full already; a CRF chain would run across packed sentences
        raise ValueError(f"data.packing cannot be combined with {', '.join(packing[1:])}")
    if spec.data.label_pieces == "all" and spec.model.head == "crf":
        # a CRF reads word starts only, and a pipeline decodes no CRF: nothing to agree with
        raise ValueError(
            "data.label_pieces=all trains every sub-token; model.head=crf reads "
            "only each word's first one: choose one"
        )


def _check_privacy(spec: JobSpec) -> None:
    """DP-SGD cannot honour settings that mix examples or change the clipped gradient."""
    if spec.train.privacy is None:
        return
    t = spec.train
    clash = {
        "train.compile": t.compile,
        "data.packing": spec.data.packing,
        "train.clip_grad_norm": t.clip_grad_norm is not None,
        "train.grad_accum": t.grad_accum != 1,
        "train.precision=fp16": t.precision == "fp16",
    }
    named = [name for name, on in clash.items() if on]
    if named:
        raise ValueError(f"train.privacy cannot be combined with {', '.join(named)}")


TASK_FORMATS = {
    "image-classification": ("digits", "idx", "imagefolder"),
    "token-classification": ("conll",),
    "text-classification": ("text",),
    "tabular-classification": ("csv-table",),
    "recommendation": ("movielens",),
    "intent-classification": ("banking77", "clinc150"),
}
