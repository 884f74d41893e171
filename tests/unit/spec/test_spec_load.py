"""Job spec loading: defaults < YAML < --set, YAML scalars in overrides, field-named errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tensorfab.errors import TensorfabError
from tensorfab.spec import JobSpec, dump_spec, load_spec


def _write(tmp_path: Path, text: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _error(path: str | Path | None, overrides: list[str] | None = None) -> str:
    with pytest.raises(TensorfabError) as info:
        load_spec(path, overrides)
    return str(info.value)


def test_defaults_without_a_file() -> None:
    spec = load_spec(None)
    assert spec == JobSpec()
    assert spec.name == "job"
    assert spec.task == "image-classification"
    assert spec.data.format == "digits" and spec.data.path is None
    assert spec.data.batch_size == 64
    assert spec.model.name == "lenet" and spec.model.args == {}
    assert spec.train.epochs == 10
    assert spec.train.lr == pytest.approx(1e-3)
    assert spec.train.device == "auto" and spec.train.precision == "auto"
    assert spec.output.runs_dir == "runs" and spec.output.name is None


def test_precedence_defaults_yaml_set(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: mine\ntrain:\n  epochs: 5\n  lr: 0.01\n")
    spec = load_spec(path, ["train.epochs=7"])
    assert spec.train.epochs == 7  # --set beats YAML
    assert spec.train.lr == pytest.approx(0.01)  # YAML beats defaults
    assert spec.name == "mine"
    assert spec.data.batch_size == 64  # untouched default


def test_set_values_are_yaml_scalars() -> None:
    spec = load_spec(
        None,
        [
            "train.epochs=3",
            "train.lr=1e-3",
            "train.compile=true",
            "model.args.image_size=32",
            "output.name=run-1",
        ],
    )
    assert spec.train.epochs == 3 and type(spec.train.epochs) is int
    assert spec.train.lr == pytest.approx(1e-3) and type(spec.train.lr) is float
    assert spec.train.compile is True
    # model.args is free-form, so the parsed type shows through unchanged
    assert spec.model.args == {"image_size": 32}
    assert type(spec.model.args["image_size"]) is int
    assert spec.output.name == "run-1"


def test_set_value_with_equals_sign_keeps_the_rest() -> None:
    assert load_spec(None, ["output.mlflow=file:./a=b"]).output.mlflow == "file:./a=b"


@pytest.mark.parametrize("field", ["name", "output.name"])
@pytest.mark.parametrize("name", ["../escape", "/tmp/abs", "a/b", "..", "."])
def test_a_run_name_is_one_folder_never_a_path(field: str, name: str) -> None:
    with pytest.raises(TensorfabError) as err:
        load_spec(None, [f"{field}={name}"])
    assert f"{field}: {name!r} is not a folder name" in str(err.value)
    assert load_spec(None, [f"{field}=run-1.b_2"]) is not None


def test_typo_names_file_line_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\ntrain:\n  epoch: 3\n", name="typo.yaml")
    msg = _error(path)
    assert "typo.yaml:3:" in msg
    assert "train.epoch: unknown field" in msg
    assert "\n" not in msg


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "data:\n  batch_size: many\n", name="types.yaml")
    msg = _error(path)
    assert "data.batch_size" in msg
    assert "types.yaml:2:" in msg


def test_invalid_device_names_field_and_set() -> None:
    msg = _error(None, ["train.device=gpu"])
    assert msg.startswith("--set")
    assert "train.device" in msg
    assert "'gpu'" in msg


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:3", "mps"])
def test_valid_devices(device: str) -> None:
    assert load_spec(None, [f"train.device={device}"]).train.device == device


def test_set_without_equals_sign() -> None:
    msg = _error(None, ["trainepochs"])
    assert msg == "--set 'trainepochs': expected KEY=VALUE, e.g. train.epochs=3"


def test_set_into_a_scalar_is_not_a_section(tmp_path: Path) -> None:
    msg = _error(_write(tmp_path, "name: x\n"), ["name.first=x"])
    assert "--set 'name.first=x'" in msg and "name is not a section" in msg


def test_out_of_range_set_value() -> None:
    msg = _error(None, ["train.epochs=0"])
    assert msg.startswith("--set: train.epochs:")


def test_invalid_yaml_reports_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\ntrain:\n  epochs: 3\n bad: 1\n", name="broken.yaml")
    msg = _error(path)
    assert re.search(r"broken\.yaml:4: invalid YAML", msg), msg


def test_yaml_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, "- 1\n- 2\n", name="list.yaml")
    msg = _error(path)
    assert "list.yaml:1:" in msg and "mapping" in msg


def test_empty_yaml_is_the_defaults(tmp_path: Path) -> None:
    assert load_spec(_write(tmp_path, "")) == JobSpec()


def test_missing_file(tmp_path: Path) -> None:
    msg = _error(tmp_path / "nope.yaml")
    assert "nope.yaml" in msg and "cannot read spec" in msg


def test_idx_without_path_asks_for_data_path(tmp_path: Path) -> None:
    path = _write(tmp_path, "data:\n  format: idx\n", name="idx.yaml")
    msg = _error(path)
    assert "data.path is required" in msg and "'idx'" in msg
    assert "idx.yaml:1:" in msg
    # with a path the same spec is fine
    assert load_spec(path, ["data.path=somewhere"]).data.path == "somewhere"


def test_spec_is_frozen() -> None:
    spec = load_spec(None)
    with pytest.raises(Exception, match="frozen"):
        spec.train.epochs = 3  # type: ignore[misc]


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    spec = load_spec(
        None,
        [
            "name=round",
            "data.format=imagefolder",
            "data.path=imgs",
            "data.image_size=32",
            "data.channels=3",
            "model.name=resnet-18",
            "model.args.width=8",
            "train.lr=0.0005",
            "train.device=cuda:1",
            "train.early_stopping.patience=2",
            "output.name=r1",
        ],
    )
    path = _write(tmp_path, dump_spec(spec), name="resolved.yaml")
    assert load_spec(path) == spec


def test_dump_of_defaults_round_trips(tmp_path: Path) -> None:
    spec = load_spec(None)
    assert load_spec(_write(tmp_path, dump_spec(spec))) == spec


def test_bare_on_off_switches_survive_yaml_booleans(tmp_path) -> None:
    # YAML 1.1 reads on/off as booleans; the auto|on|off switches take them back
    path = tmp_path / "job.yaml"
    path.write_text("data:\n  device_resident: off\ntrain:\n  fused: on\n")
    spec = load_spec(path, ["train.compile=false"])
    assert (spec.data.device_resident, spec.train.fused) == ("off", "on")
    assert load_spec(None, ["train.fused=off"]).train.fused == "off"
    with pytest.raises(TensorfabError, match=r"train.fused: Input should be 'auto', 'on' or 'off'"):
        load_spec(None, ["train.fused=maybe"])


def test_packing_is_refused_for_a_per_text_task() -> None:
    with pytest.raises(TensorfabError, match=r"data\.packing: only for token-classification"):
        load_spec(None, ["task=text-classification", "data.format=text", "data.path=x.csv",
                         "data.packing=true"])  # fmt: skip


def test_a_short_list_from_set_is_blamed_on_set_not_the_file(tmp_path: Path) -> None:
    f = tmp_path / "job.yaml"
    f.write_text("train:\n  epochs: 2\n")
    with pytest.raises(TensorfabError) as info:
        load_spec(f, ["data.split_fractions=[0.5,0.5]"])
    assert str(info.value) == "--set: data.split_fractions: too few items (item 2 missing)"
    f.write_text("data:\n  split_fractions: [0.5, 0.5]\n")
    with pytest.raises(TensorfabError) as info:
        load_spec(f)
    assert str(info.value) == f"{f}:2: data.split_fractions: too few items (item 2 missing)"


def test_intents_ambiguity_margin_is_set_checked_and_only_for_intents() -> None:
    base = ["task=intent-classification", "data.format=banking77", "data.path=x.csv"]
    assert (
        load_spec(None, [*base, "intents.ambiguity_margin=0.25"]).intents.ambiguity_margin == 0.25
    )
    assert load_spec(None, base).intents is None  # the task's default (0.1) applies
    assert _error(None, [*base, "intents.ambiguity_margin=1.5"]).startswith(
        "--set: intents.ambiguity_margin:"
    )
    with pytest.raises(TensorfabError, match=r"intents: only for intent-classification"):
        load_spec(None, ["intents.ambiguity_margin=0.2"])  # the default task: images


def test_an_ensemble_is_not_trained_as_one_model() -> None:
    with pytest.raises(TensorfabError, match=r"model.args.*tensorfab ensemble RUN RUN"):
        load_spec(None, ["model.args.ensemble=2"])
