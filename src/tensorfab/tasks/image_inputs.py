"""Images as people give them, brought to the form the model was trained on.

A user's image is decoded by the one image decoder (``data.imagefolder.open_image``) with a
pixel-count limit read from the header, so a decompression bomb is refused before a pixel is
decoded. Digit-like training data (a plain background, strokes in the middle, as MNIST) has a
polarity, measured from the border against the centre: a black-on-white digit drawn the usual
way is inverted for a model trained on white-on-black, then fitted and centred as MNIST was
made (the ink's bounding box scaled so its longer side is 20 px of 28, pasted so its centre of
mass sits at the centre). Each change is said in a note. Images without a plain background
(photos) are only turned upright (EXIF) and converted to the trained channels and size, as
training read them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np

from tensorfab.data.imagefolder import open_image, to_array
from tensorfab.errors import TensorfabError

if TYPE_CHECKING:
    from PIL import Image

Polarity = Literal["light-on-dark", "dark-on-light", "none"]
POLARITIES: tuple[str, ...] = get_args(Polarity)

# 50 million pixels: a 48-megapixel phone photo still decodes (about 150 MB as RGB), a
# 13000x13000 PNG (169 million pixels from a 20 KB file) does not.
DEFAULT_MAX_PIXELS = 50_000_000
# MNIST's recipe: the digit's box is 20 px in a 28 px field; other sizes keep the ratio.
FIT_RATIO = 20 / 28
# A data set has a polarity when this share of its images agree on it.
POLARITY_AGREEMENT = 0.9
# Border and centre must differ by this much (of 255) for an image to count as digit-like.
POLARITY_MARGIN = 32
# Ink is what is brighter than this share of the brightest ink (after levelling).
INK_SHARE = 0.1
# Polarity is measured on at most this many evenly spaced training images.
POLARITY_SAMPLE = 2000
EXIF_ORIENTATION = 0x0112  # the EXIF tag that says how the camera was held


@dataclass(frozen=True)
class TrainingForm:
    """What the model was trained on: channels (1 grey, 3 RGB), size, and polarity."""

    channels: int
    height: int
    width: int
    polarity: Polarity = "none"

    @classmethod
    def from_input(cls, spec: dict[str, Any]) -> TrainingForm:
        """From a package's ``input`` record; a package without ``polarity`` reads "none"."""
        polarity = spec.get("polarity", "none")
        if polarity not in POLARITIES:
            raise TensorfabError(f"input.polarity: {polarity!r} is not one of {POLARITIES}")
        return cls(int(spec["channels"]), int(spec["height"]), int(spec["width"]), polarity)


def decode_image(
    source: bytes | str | Path, where: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Decode an uploaded image (encoded bytes or a file path), refusing more than ``max_pixels``.

    The limit is checked against the size in the header, before decoding. ``where`` names
    the image in errors (default: the path, or "image" for bytes).
    """
    if isinstance(source, bytes):
        return open_image(io.BytesIO(source), where or "image", max_pixels)
    return open_image(Path(source), where or str(source), max_pixels)


def measure_polarity(train_images: Any) -> Polarity:
    """The training images' polarity from border against centre, uint8 [N, C, H, W].

    "light-on-dark" (MNIST: white strokes on black) or "dark-on-light" when at least 90% of
    the images have a border that much darker (lighter) than their centre; "none" otherwise
    (photos, mixed data), for which inputs are never inverted or re-centred.
    """
    images = np.asarray(train_images)
    if images.ndim != 4 or len(images) == 0:
        return "none"
    step = max(1, len(images) // POLARITY_SAMPLE)
    grey = images[::step].astype(np.float32).mean(axis=1)  # [N, H, W]
    border, centre = _border_mean(grey), _centre_mean(grey)
    if np.mean(centre - border > POLARITY_MARGIN) >= POLARITY_AGREEMENT:
        return "light-on-dark"
    if np.mean(border - centre > POLARITY_MARGIN) >= POLARITY_AGREEMENT:
        return "dark-on-light"
    return "none"


def _ring(height: int, width: int) -> np.ndarray:
    """A mask of the outer ring, 1/14 of the shorter side wide (2 px of 28)."""
    band = max(1, round(min(height, width) / 14))
    mask = np.ones((height, width), dtype=bool)
    mask[band : height - band, band : width - band] = False
    return mask


def _border_mean(grey: np.ndarray) -> np.ndarray:
    """Mean of each image's outer ring, grey [..., H, W] -> [...]."""
    return grey[..., _ring(*grey.shape[-2:])].mean(axis=-1)


def _centre_mean(grey: np.ndarray) -> np.ndarray:
    """Mean of each image's central half (a quarter of the area), grey [..., H, W] -> [...]."""
    height, width = grey.shape[-2:]
    return grey[..., height // 4 : height - height // 4, width // 4 : width - width // 4].mean(
        axis=(-2, -1)
    )


def to_training_form(image: Image.Image, spec: TrainingForm) -> tuple[np.ndarray, list[str]]:
    """``image`` as the model saw its training data: uint8 [C, H, W] and notes on each change.

    A photo is first turned upright by its EXIF orientation. For a polarity "none" model:
    converted to grey/RGB and resized, as training read images. For a digit-like model:
    transparency flattened onto white, inverted when the background
    is the opposite of training's, then fitted and centred as MNIST; an image already in
    that form passes unchanged, with no notes.
    """
    notes: list[str] = []
    image = _flatten_alpha(_upright(image, notes), notes)
    if spec.polarity == "none":
        return _as_trained(image, spec, notes), notes
    grey = np.asarray(image.convert("L"), dtype=np.uint8)
    ink = _ink(grey, spec.polarity, notes)
    if not (grey.shape == (spec.height, spec.width) and _is_fitted(ink)):
        ink = _fit_and_centre(ink, spec.height, spec.width, notes)
    out = ink if spec.polarity == "light-on-dark" else 255 - ink
    if spec.channels == 3:
        return np.repeat(out[None], 3, axis=0), notes
    _note_colour(image, 1, notes)
    return out[None].copy(), notes


def _as_trained(image: Image.Image, spec: TrainingForm, notes: list[str]) -> np.ndarray:
    """Grey/RGB and size as the training folder read images (``to_array``)."""
    _note_colour(image, spec.channels, notes)
    if image.size != (spec.width, spec.height):
        notes.append(f"resized {image.size[0]}x{image.size[1]} to {spec.width}x{spec.height}")
    return to_array(image, spec.channels, (spec.width, spec.height))


def _note_colour(image: Image.Image, channels: int, notes: list[str]) -> None:
    """Say so when a colour image is read as grey: its colour is dropped."""
    if channels == 1 and image.mode not in ("1", "L", "LA", "I", "I;16", "F", "P"):
        notes.append("converted colour to grey")


def _upright(image: Image.Image, notes: list[str]) -> Image.Image:
    """A photo turned as its camera's EXIF orientation says (phones store it sideways)."""
    from PIL import ImageOps

    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    if orientation == 1:
        return image
    notes.append(f"turned upright (EXIF orientation {orientation})")
    return ImageOps.exif_transpose(image)


def _flatten_alpha(image: Image.Image, notes: list[str]) -> Image.Image:
    """An image with transparent pixels laid onto white (a canvas drawing's background)."""
    from PIL import Image

    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode not in ("RGBA", "LA", "La", "RGBa", "PA"):
        return image
    rgba = image.convert("RGBA")
    if rgba.getchannel("A").getextrema()[0] == 255:
        return image
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    notes.append("transparent background laid onto white")
    return Image.alpha_composite(white, rgba).convert("RGB")


def _ink(grey: np.ndarray, polarity: Polarity, notes: list[str]) -> np.ndarray:
    """Strokes bright on a black background (uint8 [H, W]), whatever the image's polarity.

    The background is the border's median; a light one is inverted. A background that is
    not black after that (paper in a photo) is levelled to 0 and the ink stretched to 255.
    """
    light = float(np.median(grey[_ring(*grey.shape)])) > 127
    if light != (polarity == "dark-on-light"):
        notes.append("inverted: light background" if light else "inverted: dark background")
    ink = 255 - grey if light else grey
    background = float(np.median(ink[_ring(*ink.shape)]))
    if background <= 0:
        return ink
    top = float(ink.max())
    if top <= background:
        return np.zeros_like(ink)
    notes.append(f"background levelled: {background:.0f} of 255 taken as black")
    levelled = (ink.astype(np.float32) - background) * (255 / (top - background))
    return np.clip(np.rint(levelled), 0, 255).astype(np.uint8)


def _ink_box(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right) of the ink, end-exclusive; None for a blank image."""
    if ink.max() == 0:
        return None
    rows, cols = np.nonzero(ink > INK_SHARE * ink.max())
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


def centre_of_mass(ink: np.ndarray) -> tuple[float, float]:
    """(row, column) of the ink's centre of mass, pixel-index coordinates."""
    total = float(ink.sum())
    rows, cols = np.indices(ink.shape)
    return float((rows * ink).sum() / total), float((cols * ink).sum() / total)


def _is_fitted(ink: np.ndarray) -> bool:
    """Already fitted and centred: longer side 75-105% of the fit box, mass within 1.5 px."""
    box = _ink_box(ink)
    if box is None:
        return True
    height, width = ink.shape
    fit_h, fit_w = height * FIT_RATIO, width * FIT_RATIO
    top, left, bottom, right = box
    scale = max((bottom - top) / fit_h, (right - left) / fit_w)
    row, col = centre_of_mass(ink)
    centred = abs(row - (height - 1) / 2) <= 1.5 and abs(col - (width - 1) / 2) <= 1.5
    return 0.75 <= scale <= 1.05 and centred


def _fit_and_centre(ink: np.ndarray, height: int, width: int, notes: list[str]) -> np.ndarray:
    """Crop to the ink, scale its longer side to the fit box, centre its mass in H x W."""
    from PIL import Image

    box = _ink_box(ink)
    if box is None:
        notes.append(f"blank image: resized to {width}x{height}")
        return np.zeros((height, width), dtype=np.uint8)
    top, left, bottom, right = box
    fit_h, fit_w = max(1, round(height * FIT_RATIO)), max(1, round(width * FIT_RATIO))
    scale = min(fit_h / (bottom - top), fit_w / (right - left))
    size = (max(1, round((right - left) * scale)), max(1, round((bottom - top) * scale)))
    crop = Image.fromarray(ink[top:bottom, left:right])
    patch = np.asarray(crop.resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)
    notes.append(f"fitted into {fit_w}x{fit_h} and centred")
    return _paste_centred(patch, height, width)


def _paste_centred(patch: np.ndarray, height: int, width: int) -> np.ndarray:
    """``patch`` on a black H x W field, its centre of mass at the centre (kept inside)."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    if patch.max() == 0:
        return canvas
    row, col = centre_of_mass(patch)
    h, w = patch.shape
    top = min(max(round((height - 1) / 2 - row), 0), height - h)
    left = min(max(round((width - 1) / 2 - col), 0), width - w)
    canvas[top : top + h, left : left + w] = patch
    return canvas
