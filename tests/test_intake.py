"""Every kind of input a user can hand over: decoded right, or refused with a clear, typed error."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import numpy as np
import pillow_heif
import pytest
from PIL import Image

from picmetric import ImageTooLargeError, InvalidImageError, load_image
from picmetric.settings import Settings


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def gradient(width: int = 64, height: int = 48) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return Image.fromarray(np.stack([x, y, 255 - x], axis=2))


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG whose header claims a huge size but which holds a few bytes of pixels: a decompression-bomb probe."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_common_formats_decode_to_rgb(fmt):
    loaded = load_image(encode(gradient(), fmt))
    assert loaded.format == fmt
    assert (loaded.width, loaded.height) == (64, 48)
    assert loaded.pixels.shape == (48, 64, 3) and loaded.pixels.dtype == np.uint8


def test_heic_decodes():
    pillow_heif.register_heif_opener()
    loaded = load_image(encode(gradient(), "HEIF", quality=90))
    assert loaded.format in ("HEIF", "HEIC")
    assert loaded.pixels.shape == (48, 64, 3)
    assert abs(int(loaded.pixels[24, 63, 0]) - 255) < 20  # colours survive


def test_hashes_are_of_the_original_bytes():
    data = encode(gradient(), "PNG")
    loaded = load_image(data)
    assert loaded.sha256 == hashlib.sha256(data).hexdigest()
    assert loaded.md5 == hashlib.md5(data).hexdigest()
    assert loaded.data == data


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    loaded = load_image(encode(image, "JPEG", exif=exif.tobytes(), quality=95))
    assert (loaded.width, loaded.height) == (20, 40)
    assert loaded.pixels.shape == (40, 20, 3)
    top = loaded.pixels[5, 10]
    assert top[2] > 200 and top[0] < 60  # the blue half is now on top


def test_cmyk_jpeg_becomes_rgb():
    loaded = load_image(encode(Image.new("CMYK", (30, 20), (0, 255, 255, 0)), "JPEG"))  # pure red in CMYK
    r, g, b = loaded.pixels[10, 15]
    assert r > 200 and g < 60 and b < 60


def test_16_bit_png_is_scaled_not_clipped():
    values = np.linspace(0, 65535, 64, dtype=np.uint16)[None, :].repeat(8, 0)
    loaded = load_image(encode(Image.fromarray(values), "PNG"))
    row = loaded.pixels[0, :, 0]
    assert row[0] == 0 and row[-1] == 255
    assert 100 < row[32] < 160  # mid-grey stays mid-grey


def test_transparency_is_flattened_onto_white():
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert (load_image(encode(rgba, "PNG")).pixels == 255).all()
    la = Image.new("LA", (10, 10), (0, 0))
    assert (load_image(encode(la, "PNG")).pixels == 255).all()
    palette = Image.new("P", (10, 10), 0)
    palette.info["transparency"] = 0
    assert (load_image(encode(palette, "PNG", transparency=0)).pixels == 255).all()


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    r, g, b = load_image(data).pixels[8, 8]
    assert r > 200 and g < 50 and b < 50


def test_working_copy_is_capped_and_scale_maps_back():
    settings = Settings(working_max_side=200)
    loaded = load_image(encode(gradient(800, 400), "JPEG"), settings=settings)
    assert (loaded.width, loaded.height) == (800, 400)
    assert max(loaded.pixels.shape[:2]) == 200
    assert loaded.scale == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, this is a text file\n" * 10, "not an image"),
        (b"<html><body>not found</body></html>", "not an image"),
    ],
)
def test_non_images_are_refused(data, message):
    with pytest.raises(InvalidImageError, match=message):
        load_image(data)


def test_truncated_jpeg_is_refused():
    data = encode(gradient(256, 256), "JPEG", quality=95)
    with pytest.raises(InvalidImageError, match="truncated|damaged"):
        load_image(data[: len(data) // 2])


def test_huge_png_header_is_refused_before_decoding():
    with pytest.raises(ImageTooLargeError, match="more than 179 megapixels"):  # Pillow's guard, at open
        load_image(png_header_only(100_000, 100_000))
    with pytest.raises(ImageTooLargeError, match="30000x2000"):  # under Pillow's guard: our limits, same stage
        load_image(png_header_only(30_000, 2_000))


def test_pixel_limit_is_configurable():
    with pytest.raises(ImageTooLargeError, match="megapixels"):
        load_image(encode(gradient(400, 400), "PNG"), settings=Settings(max_pixels=100_000))


def test_absurd_aspect_dimension_is_refused():
    with pytest.raises(ImageTooLargeError, match="each side"):
        load_image(png_header_only(30_000, 2))


def test_byte_limit_is_enforced():
    with pytest.raises(ImageTooLargeError, match="limit"):
        load_image(encode(gradient(), "BMP"), settings=Settings(max_upload_bytes=1000))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InvalidImageError, match="no such file"):
        load_image(tmp_path / "nope.jpg")


def test_path_input_keeps_the_file_name(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(encode(gradient(), "PNG"))
    assert load_image(path).name == "photo.png"


def test_pillow_bomb_guard_stays_on_and_is_reported_as_too_large():
    """PicMetric never turns Pillow's process-wide guard off; a bomb it refuses is a clear 'too large'."""
    assert Image.MAX_IMAGE_PIXELS is not None
    generous = Settings(max_pixels=10**10, max_dimension=10**6)  # our limits out of the way: Pillow's must hold
    side = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 10
    with pytest.raises(ImageTooLargeError, match="more than 179 megapixels"):
        load_image(png_header_only(side, side), settings=generous)


def test_tests_run_on_isolated_settings():
    """The suite's autouse fixture: no developer configuration and no real data folder reach a test."""
    import os

    settings = Settings()
    assert settings.database_url is None and settings.s3_bucket is None
    assert "pytest" in str(settings.data_dir) and "test-output" in str(settings.model_cache_dir)
    assert not any(name.startswith("S3_") or name == "DATABASE_URL" for name in os.environ)


def test_large_decodes_wait_for_the_pixel_budget_then_are_refused_politely():
    """Decoded pixels in flight are bounded per process: a decode waits for the budget, up to decode_wait_s."""
    import threading
    import time

    from picmetric.core import decoding
    from picmetric.errors import ServerBusyError

    settings = Settings(decode_pixel_budget=1_000_000, decode_wait_s=0.3)
    photo = encode(gradient(1500, 1000), "PNG")  # 1.5 MP: more than the budget, so alone it takes all of it
    assert load_image(photo, settings=settings).width == 1500
    with decoding._DECODING.reserve(1_000_000, settings):  # another decode holds the whole budget
        started = time.monotonic()
        with pytest.raises(ServerBusyError, match="retry"):
            load_image(photo, settings=settings)
        assert time.monotonic() - started >= 0.3

    patient = Settings(decode_pixel_budget=1_000_000, decode_wait_s=5)
    held = threading.Event()

    def hold_briefly() -> None:
        with decoding._DECODING.reserve(1_000_000, patient):
            held.set()
            time.sleep(0.2)

    holder = threading.Thread(target=hold_briefly)
    holder.start()
    held.wait()
    assert load_image(photo, settings=patient).width == 1500  # waited for the other decode, then ran
    holder.join()


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "HEIF", "AVIF"])
def test_a_file_cut_short_is_refused(zidane_path, image_format):
    buffer = io.BytesIO()
    Image.open(zidane_path).save(buffer, image_format)
    data = buffer.getvalue()
    with pytest.raises(InvalidImageError, match="damaged|truncated|not an image"):
        load_image(data[: len(data) * 2 // 3])


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "AVIF"])
def test_a_zeroed_middle_is_refused_where_the_format_can_tell(zidane_path, image_format):
    """JPEG's entropy-coded data has no checksum: libjpeg-turbo's strict mode catches the lost sync. BMP, lossy
    WebP, uncompressed TIFF and HEIC decode a zeroed band without complaint (README, *Damaged images*)."""
    buffer = io.BytesIO()
    Image.open(zidane_path).save(buffer, image_format)
    data = buffer.getvalue()
    third = len(data) // 3
    with pytest.raises(InvalidImageError, match="damaged|truncated|not an image"):
        load_image(data[:third] + bytes(third) + data[2 * third :])


def test_harmless_jpeg_warnings_do_not_refuse_a_photo(zidane_path):
    """Bytes after the last scan (some cameras write them) make libjpeg warn; the picture is whole."""
    data = zidane_path.read_bytes()
    padded = data[:-2] + b"\x00\x00\x00" + data[-2:]  # before the end-of-image marker
    assert load_image(padded).pixels.shape == load_image(data).pixels.shape
