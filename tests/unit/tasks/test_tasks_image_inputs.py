"""Image inputs: bombs refused from the header, polarity measured, digits inverted and centred."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tensorfab.errors import TensorfabError
from tensorfab.tasks.image_inputs import (
    DEFAULT_MAX_PIXELS,
    TrainingForm,
    centre_of_mass,
    decode_image,
    measure_polarity,
    to_training_form,
)

MNIST_FORM = TrainingForm(channels=1, height=28, width=28, polarity="light-on-dark")


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


@pytest.fixture(scope="module")
def bomb_png() -> bytes:
    """A 1-bit 13000x13000 PNG, all black: about 20 KB that would decode to 169 M pixels."""
    side = 13000
    row = b"\x00" * (1 + side // 8)  # filter byte + 1625 bytes of 8 pixels each
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row * 1000) for _ in range(side // 1000)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def test_bomb_refused_from_header_quickly(bomb_png: bytes) -> None:
    assert len(bomb_png) < 40_000
    decode_image(_png_bytes(Image.new("1", (8, 8))))  # Pillow's plugins load once, not timed
    start = time.perf_counter()
    with pytest.raises(TensorfabError) as err:
        decode_image(bomb_png, "request body")
    elapsed = time.perf_counter() - start
    assert str(err.value) == (
        "request body: image is 13000x13000 = 169,000,000 pixels, over the limit of "
        "50,000,000 pixels; refused before decoding (a decompression bomb?)"
    )
    assert DEFAULT_MAX_PIXELS == 50_000_000
    assert elapsed < 0.05


def test_pixel_limit_is_a_parameter(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("L", (30, 10), 255).save(path)
    assert decode_image(path, max_pixels=300).size == (30, 10)
    with pytest.raises(
        TensorfabError, match=r"wide.png: image is 30x10 = 300 pixels, over the limit of 299 pixels"
    ):
        decode_image(path, max_pixels=299)


def test_not_an_image_names_the_place() -> None:
    with pytest.raises(TensorfabError, match=r"^upload: unreadable image \("):
        decode_image(b"hello", "upload")


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _drawn_seven() -> Image.Image:
    """A black "7" on white, 100x100, off-centre, drawn the way a person would."""
    image = Image.new("L", (100, 100), 255)
    draw = ImageDraw.Draw(image)
    draw.rectangle((10, 10, 49, 17), fill=0)  # top bar: 40 wide
    draw.line((49, 14, 25, 69), fill=0, width=8)  # the stroke down: 60 tall in all
    return image


def test_drawn_digit_becomes_mnist_form() -> None:
    image = decode_image(_png_bytes(_drawn_seven()))
    array, notes = to_training_form(image, MNIST_FORM)
    assert notes == ["inverted: light background", "fitted into 20x20 and centred"]
    assert array.shape == (1, 28, 28) and array.dtype == np.uint8
    ink = array[0]
    rows, cols = np.nonzero(ink > 0.1 * ink.max())
    # The drawn ink spans 60 rows x 44 columns (the stroke's 8 px width adds 4 at the top
    # right), so the scale is 20/60 and the box is 20 x 15 (44 / 3 = 14.7).
    assert rows.max() - rows.min() + 1 == 20
    assert abs((cols.max() - cols.min() + 1) - 15) <= 1
    row, col = centre_of_mass(ink)
    assert abs(row - 13.5) <= 1 and abs(col - 13.5) <= 1
    assert ink[0].max() == 0 and ink[:, 0].max() == 0  # black border: white on black now
    assert ink.max() >= 250  # the strokes are white


def test_mnist_form_passes_unchanged() -> None:
    once, _ = to_training_form(_drawn_seven(), MNIST_FORM)
    image = Image.fromarray(once[0])
    again, notes = to_training_form(image, MNIST_FORM)
    assert notes == []
    assert np.array_equal(again, once)


def test_dark_on_light_model_gets_dark_on_light() -> None:
    form = TrainingForm(channels=3, height=28, width=28, polarity="dark-on-light")
    array, notes = to_training_form(_drawn_seven(), form)
    assert notes == ["fitted into 20x20 and centred"]
    assert array.shape == (3, 28, 28)
    assert np.array_equal(array[0], array[2])
    assert array[0, 0].min() == 255 and array.min() <= 5


def test_transparent_canvas_drawing_laid_on_white() -> None:
    image = Image.new("LA", (50, 50), (0, 0))  # transparent black everywhere
    ImageDraw.Draw(image).rectangle((20, 5, 27, 44), fill=(0, 255))  # an opaque black "1"
    array, notes = to_training_form(image, MNIST_FORM)
    assert notes[:2] == ["transparent background laid onto white", "inverted: light background"]
    rows, _ = np.nonzero(array[0] > 25)
    assert rows.max() - rows.min() + 1 == 20


def test_photo_background_levelled() -> None:
    grey = np.full((40, 40), 200, dtype=np.uint8)  # grey paper
    grey[8:32, 18:23] = 40  # dark pencil
    array, notes = to_training_form(Image.fromarray(grey), MNIST_FORM)
    assert notes[:2] == [
        "inverted: light background",
        "background levelled: 55 of 255 taken as black",
    ]
    assert array[0, 0].max() == 0 and array.max() == 255


def test_photo_model_only_resized() -> None:
    form = TrainingForm(channels=1, height=8, width=8)
    image = Image.new("RGB", (16, 16), (255, 0, 0))
    array, notes = to_training_form(image, form)
    assert notes == ["converted colour to grey", "resized 16x16 to 8x8"]
    assert array.shape == (1, 8, 8) and int(array[0, 0, 0]) == 76  # Pillow's L of pure red


def test_blank_image() -> None:
    array, notes = to_training_form(Image.new("L", (40, 40), 255), MNIST_FORM)
    assert notes == ["inverted: light background", "blank image: resized to 28x28"]
    assert array.max() == 0


def _digits(background: int, ink: int, count: int = 20) -> np.ndarray:
    images = np.full((count, 1, 28, 28), background, dtype=np.uint8)
    images[:, :, 8:20, 12:16] = ink
    return images


def test_measure_polarity() -> None:
    assert measure_polarity(_digits(0, 255)) == "light-on-dark"
    assert measure_polarity(_digits(255, 0)) == "dark-on-light"
    mixed = np.concatenate([_digits(0, 255, 10), _digits(255, 0, 10)])
    assert measure_polarity(mixed) == "none"
    noise = np.random.default_rng(0).integers(0, 256, (20, 3, 16, 16), dtype=np.uint8)
    assert measure_polarity(noise) == "none"


def test_training_form_from_input_record() -> None:
    record = {"kind": "image", "channels": 1, "height": 28, "width": 28}
    assert TrainingForm.from_input(record).polarity == "none"
    assert TrainingForm.from_input({**record, "polarity": "light-on-dark"}) == MNIST_FORM
    with pytest.raises(TensorfabError, match=r"input.polarity: 'upside' is not one of"):
        TrainingForm.from_input({**record, "polarity": "upside"})


def test_sideways_photo_turned_upright() -> None:
    image = Image.new("L", (30, 20), 0)
    image.putpixel((0, 0), 255)  # top left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned 90 degrees anticlockwise: show it turned clockwise
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)
    form = TrainingForm(channels=1, height=30, width=20)
    array, notes = to_training_form(decode_image(buffer.getvalue()), form)
    assert notes == ["turned upright (EXIF orientation 6)"]
    assert array.shape == (1, 30, 20)
    assert array[0, 0, 19] == 255 and int(array.sum()) == 255  # now top right
