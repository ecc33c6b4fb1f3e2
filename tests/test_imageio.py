"""visionkit.imageio: still-image decoding. Golden pixels come from the arrays written to disk
(lossless formats), from Pillow decoding the same file (JPEG, EXIF, palette), or from numpy."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from tests.conftest import SHARED_DATA as DATA
from visionkit.errors import InputError
from visionkit.imageio import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    decode_image,
    decode_image_bytes,
    from_numpy,
    list_images,
    natural_key,
    to_bgr_numpy,
    to_rgb_numpy,
)


def raccoon(name: str) -> Path:
    path = DATA / "raccoon" / "images" / name
    if not path.exists():
        pytest.skip(f"shared dataset not available: {path}")
    return path


def hwc(t: torch.Tensor) -> np.ndarray:
    assert t.dtype == torch.uint8 and t.ndim == 3 and t.shape[0] == 3 and t.is_contiguous()
    return t.numpy().transpose(1, 2, 0)


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    """A 37x53 RGB test card: random pixels (odd sizes on purpose)."""
    return np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tif", ".tiff", ".webp"])
def test_lossless_formats_decode_exactly(tmp_path, rgb, ext):
    path = tmp_path / f"card{ext}"
    kwargs = {"lossless": True} if ext == ".webp" else {}
    Image.fromarray(rgb).save(path, **kwargs)  # written by Pillow, read back by visionkit (OpenCV)
    assert np.array_equal(hwc(decode_image(path)), rgb)


def test_opencv_written_tiff_and_png_decode_exactly(tmp_path, rgb):
    for ext in (".tiff", ".png"):
        path = tmp_path / f"cv{ext}"
        cv2.imwrite(str(path), rgb[:, :, ::-1])  # OpenCV writes BGR
        assert np.array_equal(hwc(decode_image(path)), rgb), ext


def test_jpeg_matches_pillow(tmp_path):
    smooth = np.zeros((64, 96, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 96, dtype=np.uint8)
    smooth[..., 1] = np.linspace(0, 255, 64, dtype=np.uint8)[:, None]
    smooth[16:40, 20:60, 2] = 200
    path = tmp_path / "a.JPG"  # upper-case extension too
    Image.fromarray(smooth).save(path, quality=95)
    ours = hwc(decode_image(path)).astype(int)
    pil = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert ours.shape == pil.shape == (64, 96, 3)
    assert np.abs(ours - pil).mean() < 0.5 and np.abs(ours - pil).max() <= 4


def test_raccoon_colour_jpeg_matches_pillow():
    path = raccoon("raccoon-10.jpg")
    ours = hwc(decode_image(path)).astype(int)
    pil = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert ours.shape == pil.shape
    assert np.abs(ours - pil).mean() < 0.5


@pytest.mark.parametrize("name", ["raccoon-150.jpg", "raccoon-152.jpg", "raccoon-161.jpg"])
def test_grayscale_raccoon_jpegs_become_three_equal_channels(name):
    path = raccoon(name)
    pil = Image.open(path)
    assert pil.mode == "L"  # the dataset's SOURCE.md: 3 grayscale JPEGs
    image = decode_image(path)
    assert tuple(image.shape) == (3, pil.height, pil.width)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    assert np.abs(image[0].numpy().astype(int) - np.asarray(pil).astype(int)).mean() < 0.5


def test_rgba_drops_alpha(tmp_path, rgb):
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[:, ::2] = 255
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(path)
    assert np.array_equal(hwc(decode_image(path)), rgb)  # colour under the alpha kept, not composited


def test_palette_and_one_bit_png_match_pillow(tmp_path, rgb):
    pal = tmp_path / "pal.png"
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(pal)
    assert np.array_equal(hwc(decode_image(pal)), np.asarray(Image.open(pal).convert("RGB")))
    bits = tmp_path / "bits.png"
    Image.fromarray(rgb[..., 0] > 127).save(bits)
    assert np.array_equal(hwc(decode_image(bits)), np.asarray(Image.open(bits).convert("RGB")))


def test_sixteen_bit_png_is_scaled_with_rounding(tmp_path):
    rng = np.random.default_rng(1)
    img16 = rng.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    # values where truncation to the low or the high byte would go wrong
    img16[0, :6, 0] = [0, 255, 256, 385, 65535, 32896]
    path = tmp_path / "deep.png"
    cv2.imwrite(str(path), img16[:, :, ::-1])
    got = hwc(decode_image(path))
    expected = np.rint(img16 / 257.0).astype(np.uint8)  # v * 255 / 65535 == v / 257
    assert np.array_equal(got, expected)
    assert got[0, :6, 0].tolist() == [0, 1, 1, 1, 255, 128]

    gray = tmp_path / "gray16.png"
    cv2.imwrite(str(gray), img16[:, :, 0])
    g = decode_image(gray)
    assert torch.equal(g[0], g[2]) and np.array_equal(g[0].numpy(), expected[:, :, 0])


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied(tmp_path, orientation):
    img = np.zeros((40, 64, 3), np.uint8)
    img[:12, :20] = (255, 0, 0)  # a red block in the stored top-left corner
    img[28:, 44:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(img).save(path, exif=exif, quality=95)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")).astype(int)
    got = hwc(decode_image(path)).astype(int)
    assert got.shape == upright.shape
    assert got.shape[:2] == ((40, 64) if orientation == 3 else (64, 40))
    assert np.abs(got - upright).mean() < 1.0


def test_jpeg_with_bytes_after_the_end_marker_still_decodes(tmp_path):
    src = raccoon("raccoon-1.jpg")
    path = tmp_path / "trailing.jpg"
    path.write_bytes(src.read_bytes() + b"camera maker data")
    assert torch.equal(decode_image(path), decode_image(src))


def _one_line_error(path: Path | str, *needles: str) -> str:
    with pytest.raises(InputError) as info:
        decode_image(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    for needle in needles:
        assert needle in message, message
    return message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _one_line_error(path, "empty file (0 bytes)")


@pytest.mark.parametrize("fraction", [0.3, 0.9, 0.999])
def test_truncated_jpeg(tmp_path, fraction):
    data = raccoon("raccoon-10.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * fraction)])
    _one_line_error(path, "truncated")


def test_truncated_png(tmp_path, rgb):
    ok, encoded = cv2.imencode(".png", rgb)
    assert ok
    path = tmp_path / "cut.png"
    path.write_bytes(encoded.tobytes()[: len(encoded) // 2])
    _one_line_error(path, "truncated")


@pytest.mark.parametrize("ext", [".bmp", ".webp", ".tiff"])
def test_truncated_other_formats(tmp_path, rgb, ext):
    ok, encoded = cv2.imencode(ext, rgb)
    assert ok
    path = tmp_path / f"cut{ext}"
    path.write_bytes(encoded.tobytes()[: len(encoded) // 2])
    _one_line_error(path, "cannot decode")


def test_undecodable_data(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n" * 20)
    _one_line_error(path, "cannot decode", "JPEG or PNG")


def test_unsupported_extension_names_supported_ones(tmp_path, rgb):
    path = tmp_path / "anim.gif"
    Image.fromarray(rgb).save(path)
    _one_line_error(path, "unsupported image type '.gif'", ".jpg", ".png")


def test_missing_file_and_directory(tmp_path):
    _one_line_error(tmp_path / "nope.jpg", "no such file or directory")
    folder = tmp_path / "dir.png"
    folder.mkdir()
    _one_line_error(folder, "is a directory")


def _png_claiming(width: int, height: int) -> bytes:
    """A small, well-formed PNG whose header claims ``width`` x ``height`` (built by hand, CRCs from zlib)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
            + chunk(b"IEND", b""))


def test_absurd_size_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(20000, 20000))
    assert MAX_PIXELS < 20000 * 20000
    _one_line_error(path, "too large", "20000x20000")


def test_decode_bytes_names_the_source():
    with pytest.raises(InputError, match=r"archive\.zip:img\.jpg"):
        decode_image_bytes(b"", name="archive.zip:img.jpg")


def test_numpy_round_trips(rgb):
    t = from_numpy(rgb)
    assert t.shape == (3, 37, 53) and t.is_contiguous()
    assert np.array_equal(to_rgb_numpy(t), rgb)
    bgr = to_bgr_numpy(t)
    assert bgr.flags.c_contiguous and np.array_equal(bgr, rgb[:, :, ::-1])
    assert torch.equal(from_numpy(bgr, bgr=True), t)
    gray = from_numpy(rgb[:, :, 0])
    assert torch.equal(gray[0], gray[2]) and torch.equal(gray[0], t[0])
    with pytest.raises(ValueError, match="uint8"):
        from_numpy(rgb.astype(np.float32))


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (480, 640), (0, 5)])
def test_layout_conversions_equal_opencvs_colour_conversion_in_every_memory_layout(shape):
    """The fast paths (OpenCV's split and merge of planes) and the fallbacks (a strided view of HWC memory, a
    non-contiguous array, BGRA) give what ``cv2.cvtColor`` and a numpy transpose give, for 1-pixel-wide and
    0-pixel images too (OpenCV's split and merge refuse the latter)."""
    rng = np.random.default_rng(sum(shape))
    bgr = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.size else bgr[:, :, ::-1].copy()  # cvtColor refuses 0 px
    chw = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    assert torch.equal(from_numpy(bgr, bgr=True), chw) and torch.equal(from_numpy(rgb), chw)
    flipped = bgr[:, ::-1]  # not C-contiguous
    assert torch.equal(from_numpy(flipped, bgr=True), chw.flip(-1))
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA) if bgr.size else np.zeros((*shape, 4), np.uint8)
    assert torch.equal(from_numpy(bgra, bgr=True), chw)
    strided = torch.from_numpy(rgb).permute(2, 0, 1)  # CHW view of HWC memory
    for image in (chw, strided):
        out = to_bgr_numpy(image)
        assert out.shape == (*shape, 3) and out.flags.c_contiguous and np.array_equal(out, bgr)
        assert np.array_equal(to_rgb_numpy(image), rgb)


def test_list_images_natural_order_skips_other_and_hidden_files(tmp_path, rgb):
    for name in ["img10.png", "img2.png", "IMG1.jpg", "notes.txt", ".hidden.png", "sub/img0.png"]:
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        if path.suffix in IMAGE_EXTENSIONS:
            Image.fromarray(rgb).save(path)
        else:
            path.write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["IMG1.jpg", "img2.png", "img10.png"]
    assert [p.relative_to(tmp_path).as_posix() for p in list_images(tmp_path, recursive=True)] == [
        "IMG1.jpg", "img2.png", "img10.png", "sub/img0.png"]
    assert sorted(["a10", "a9", "b1"], key=natural_key) == ["a9", "a10", "b1"]


# --- issue 12: one bad input must not stop the others; memory bounded by the header's pixel count ---

@pytest.mark.parametrize("data", [b"\xff", b"\xff\xd8", b"\x89PN", b"BM\x00", b"RIFF\x00\x00\x00"])
def test_files_of_a_few_bytes_are_input_errors(tmp_path, data):
    path = tmp_path / "tiny.png"
    path.write_bytes(data)
    _one_line_error(path, f"{len(data)} byte(s)")


def _bmp(width: int, height: int) -> bytes:
    """A 24-bit BMP written by hand (all black)."""
    row = (width * 3 + 3) // 4 * 4
    pixels = b"\0" * row * height
    header = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + len(pixels), 0, 0, 54) + header + pixels


def test_bmp_taller_than_opencv_allows_is_an_input_error(tmp_path):
    path = tmp_path / "tall.bmp"
    path.write_bytes(_bmp(1, 2**20 + 10))  # OpenCV's CV_IO_MAX_IMAGE_HEIGHT is 2^20
    message = _one_line_error(path, "OpenCV refuses it", "CV_IO_MAX_IMAGE_HEIGHT")
    assert "cv2.error" not in message and "loadsave.cpp" not in message


def test_symlink_loop_in_a_folder_is_listed_and_reported(tmp_path, rgb):
    cv2.imwrite(str(tmp_path / "good.png"), rgb)
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    assert [p.name for p in list_images(tmp_path)] == ["good.png", "loop.jpg"]
    _one_line_error(tmp_path / "loop.jpg", "symbolic link loop")


def test_png_with_a_corrupt_chunk_length_is_refused_without_allocating(tmp_path, rgb):
    import resource

    _, buf = cv2.imencode(".png", rgb)
    data = bytearray(buf.tobytes())
    data[33:37] = struct.pack(">I", 0x7FFFFFF0)  # the first IDAT's length (OpenCV allocated 2 GB for it)
    path = tmp_path / "chunk.png"
    path.write_bytes(bytes(data))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _one_line_error(path, "corrupt PNG", "IDAT")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".tiff", ".webp"])
def test_pixel_limit_is_enforced_from_the_header_for_every_format(tmp_path, rgb, monkeypatch, ext):
    path = tmp_path / f"img{ext}"
    assert cv2.imwrite(str(path), rgb)
    h, w = rgb.shape[:2]
    monkeypatch.setenv("VISIONKIT_MAX_PIXELS", str(h * w - 1))
    message = _one_line_error(path, "too large", f"{w}x{h}", "VISIONKIT_MAX_PIXELS")
    assert f"limit of {h * w - 1}" in message
    monkeypatch.setenv("VISIONKIT_MAX_PIXELS", str(h * w))
    assert decode_image(path).shape == (3, h, w)


def test_bad_pixel_limit_setting_is_named(tmp_path, rgb, monkeypatch):
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), rgb)
    monkeypatch.setenv("VISIONKIT_MAX_PIXELS", "lots")
    with pytest.raises(InputError, match="VISIONKIT_MAX_PIXELS='lots' is not a positive integer"):
        decode_image(path)


def test_default_limit_refuses_a_16k_square_png_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(16000, 16000))  # 256 Mpx: a legal file of this size took 126 s and 10 GB
    assert MAX_PIXELS < 16000 * 16000
    _one_line_error(path, "too large", "16000x16000")
