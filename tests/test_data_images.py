"""load_image turns every file into an RGB image or an ImageLoadError with a plain reason."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from image_factories import (
    animated_gif,
    image_bytes,
    jpeg_with_orientation,
    png_with_claimed_size,
    ramp_16bit,
    rgb_image,
    write_image,
)
from PIL import Image

from inspector.data import IMAGE_EXTENSIONS, MAX_IMAGE_PIXELS, content_hash, is_image_path, load_image, to_rgb_array
from inspector.errors import ImageLoadError, InspectorError
from inspector.runtime import images as images_module  # the code; inspector.data.images re-exports it

RED = (220, 20, 20)


def _assert_rgb(img: Image.Image, size: tuple[int, int]) -> None:
    assert img.mode == "RGB"
    assert img.size == size
    img.getpixel((0, 0))  # fully loaded, not a closed or lazy image


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF"])
def test_common_formats_load_as_rgb(fmt):
    img = load_image(image_bytes(rgb_image(40, 30, RED), fmt))
    _assert_rgb(img, (40, 30))
    r, g, b = img.getpixel((20, 15))
    assert r > 180 and g < 70 and b < 70


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "CMYK", "I", "F", "I;16"])
def test_modes_without_alpha_become_rgb(mode):
    src = Image.new("L", (10, 6), 255).convert(mode) if mode not in ("I;16",) else ramp_16bit(65535, 10, 6)
    fmt = "JPEG" if mode == "CMYK" else "TIFF"
    img = load_image(image_bytes(src, fmt))
    _assert_rgb(img, (10, 6))
    assert to_rgb_array(img).max() > 200  # white / bright stays bright


@pytest.mark.parametrize("mode", ["LA", "PA", "RGBA"])
def test_transparent_pixels_are_composited_on_white(mode):
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # one fully transparent pixel
    src = rgba.convert(mode)
    # PNG cannot store "PA"; to_rgb_array applies the same conversion to in-memory images.
    arr = to_rgb_array(src) if mode == "PA" else to_rgb_array(load_image(image_bytes(src, "PNG")))
    assert tuple(arr[0, 0]) == (255, 255, 255)
    assert tuple(arr[4, 4]) == (0, 0, 0)


def test_palette_png_with_transparency_uses_white_background():
    src = Image.new("P", (4, 4), 1)
    src.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    arr = to_rgb_array(load_image(image_bytes(src, "PNG", transparency=1)))
    assert tuple(arr[0, 0]) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
@pytest.mark.parametrize("bits", [10, 12, 16])
def test_high_bit_depth_ramp_keeps_its_contrast(fmt, bits):
    # A 12-bit camera image in a 16-bit container must not come out (nearly) black.
    arr = to_rgb_array(load_image(image_bytes(ramp_16bit(2**bits - 1), fmt)))
    grey = arr[..., 0]
    assert grey.min() == 0 and grey.max() == 255
    assert len(np.unique(grey)) > 200
    assert (arr[..., 0] == arr[..., 2]).all()


def test_dark_16bit_image_is_scaled_by_its_used_bit_depth():
    # max 3000 -> 12-bit -> 3000 * 255 / 4095 = 187
    arr = to_rgb_array(load_image(image_bytes(ramp_16bit(3000), "PNG")))
    assert arr.max() == round(3000 * 255 / 4095)


@pytest.mark.parametrize(
    ("values", "expected"),
    [([0.0, 0.5, 1.0], [0, 128, 255]),  # floats in [0, 1]
     ([0.0, 100.0, 255.0], [0, 100, 255]),  # floats holding 8-bit values
     ([-1.0, 0.0, 1.0], [0, 128, 255])],  # signed: stretched
)
def test_float_images_are_scaled_sensibly(values, expected):
    data = np.array([values], dtype=np.float32)
    arr = to_rgb_array(load_image(image_bytes(Image.fromarray(data), "TIFF")))
    assert arr[0, :, 0].tolist() == expected


def test_32bit_integer_image_beyond_16_bits_is_stretched():
    data = np.array([[0, 2**20, 2**24]], dtype=np.int32)
    arr = to_rgb_array(load_image(image_bytes(Image.fromarray(data), "TIFF")))
    assert arr[0, :, 0].tolist() == [0, 16, 255]


def test_exif_orientation_6_rotates_the_phone_photo_upright():
    img = load_image(jpeg_with_orientation(60, 20, orientation=6))
    assert img.size == (20, 60)


def test_animated_gif_gives_the_first_frame():
    arr = to_rgb_array(load_image(animated_gif([(255, 0, 0), (0, 0, 255)])))
    r, g, b = arr[8, 8]
    assert r > 200 and b < 50


def test_decompression_bomb_header_is_refused_before_decoding():
    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageLoadError) as err:
        load_image(png_with_claimed_size(40000, 40000))
    assert str(err.value) == "image too large: 40000 x 40000 pixels (limit 80 MP; raise it with --max-megapixels or INSPECTOR_MAX_MEGAPIXELS)"
    assert Image.MAX_IMAGE_PIXELS == limit_before  # no global state leaked


def test_image_just_over_our_limit_is_refused_by_our_own_check():
    # 9000 x 9000 = 81 MP: above our 80 MP, below Pillow's own warning threshold.
    with pytest.raises(ImageLoadError, match=r"image too large: 9000 x 9000 pixels \(limit 80 MP;"):
        load_image(png_with_claimed_size(9000, 9000))
    assert MAX_IMAGE_PIXELS == 80_000_000


def test_max_pixels_argument_is_honoured():
    data = image_bytes(rgb_image(100, 100), "PNG")
    with pytest.raises(ImageLoadError, match="image too large: 100 x 100 pixels"):
        load_image(data, max_pixels=9_999)
    assert load_image(data, max_pixels=10_000).size == (100, 100)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"hello, this is a text file renamed to .jpg\n", "not an image (or an unsupported format)"),
        (image_bytes(rgb_image(64, 64), "JPEG")[:300], "truncated or corrupt image data"),
        (image_bytes(rgb_image(64, 64), "PNG")[:60], "truncated or corrupt image data"),
    ],
    ids=["empty", "text", "truncated-jpeg", "truncated-png"],
)
def test_broken_files_give_a_plain_reason(tmp_path, content, reason):
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    for source in (path, str(path), content):
        with pytest.raises(ImageLoadError) as err:
            load_image(source)
        assert str(err.value) == reason
        assert isinstance(err.value, InspectorError)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ImageLoadError, match="^file not found$"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="folder"):
        load_image(tmp_path)


@pytest.mark.parametrize(
    ("error", "reason"),
    [(ValueError("conversion not supported"), "unsupported colour mode (RGB)"),
     (MemoryError(), "not enough memory to decode the image")],
)
def test_conversion_failures_become_load_errors(monkeypatch, error, reason):
    def fail(_img, *_):
        raise error

    monkeypatch.setattr(images_module, "_to_rgb", fail)
    with pytest.raises(ImageLoadError) as err:
        load_image(image_bytes(rgb_image(), "PNG"))
    assert str(err.value) == reason


def test_formats_outside_the_supported_list_are_refused():
    # Pillow could read these, but we only trust the decoders of our listed formats.
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(image_bytes(rgb_image(), "PPM"))


def test_uppercase_extension_and_non_ascii_long_names_load(tmp_path):
    upper = write_image(tmp_path / "PHOTO.JPG")
    long_name = write_image(tmp_path / ("Kratzer_äöü_日本_" + "x" * 150 + ".png"))
    for path in (upper, long_name):
        assert is_image_path(path)
        _assert_rgb(load_image(path), (40, 30))


def test_image_extensions_are_lower_case_and_complete():
    assert IMAGE_EXTENSIONS == {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
    assert is_image_path("a.TIFF") and is_image_path("b.Jpeg")
    assert not is_image_path("notes.txt") and not is_image_path("png")


def test_to_rgb_array_is_contiguous_writable_uint8():
    arr = to_rgb_array(Image.new("L", (5, 3), 7))
    assert arr.shape == (3, 5, 3) and arr.dtype == np.uint8
    assert arr.flags["C_CONTIGUOUS"] and arr.flags["WRITEABLE"]
    assert (arr == 7).all()


def test_content_hash_is_sha256_hex():
    assert content_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert content_hash(b"abc") != content_hash(b"abd")


def _assert_rgb_or_load_error(data: bytes) -> None:
    try:
        img = load_image(data)
    except ImageLoadError as exc:
        assert str(exc)  # a reason, never an empty message
    else:
        assert img.mode == "RGB" and img.width > 0 and img.height > 0


_SEEDS = [
    image_bytes(img, fmt)
    for img, fmt in [
        (rgb_image(9, 7), "PNG"), (rgb_image(9, 7), "JPEG"), (rgb_image(9, 7), "GIF"),
        (rgb_image(9, 7), "BMP"), (ramp_16bit(4095, 9, 7), "TIFF"), (rgb_image(9, 7), "WEBP"),
    ]
] + [jpeg_with_orientation(9, 7, 6)]
_FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(st.binary(max_size=2048))
def test_fuzz_any_bytes_give_rgb_or_image_load_error(data):
    _assert_rgb_or_load_error(data)


@_FUZZ
@given(
    seed=st.sampled_from(_SEEDS),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    cut=st.integers(0, 10_000),
)
def test_fuzz_damaged_real_images_give_rgb_or_image_load_error(seed, flips, cut):
    # Random bytes rarely pass a format's magic number; damaged real files reach the decoders.
    data = bytearray(seed)
    for pos, value in flips:
        data[pos % len(data)] = value
    _assert_rgb_or_load_error(bytes(data[: max(1, cut % (len(data) + 1))]))

