"""``sources.images.jpeg_decoder``: JPEGs decoded in batches through TorchCodec (``nvjpeg`` on a GPU, ``torchcodec``
the same path on the CPU), which applies the EXIF orientation itself.

The oracle is OpenCV, the default decoder: on the CPU both are libjpeg-turbo, so the frames must be OpenCV's bit
for bit, in order, with the same bad items (same messages) and the same orientation on all eight EXIF values.
nvJPEG itself needs a GPU; here its refusal without one is checked through the CLI.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import visionkit
from tests.conftest import ROOT, data_path
from visionkit.errors import ConfigError
from visionkit.jpeg_decode import takes_jpeg
from visionkit.types import BadItem, Frame

pytest.importorskip("torchcodec", reason="jpeg_decoder needs TorchCodec (pip install 'visionkit[gpu]')")


def _frames(host, folder: Path, decoder: str, threads: int = 2) -> list[Frame | BadItem]:
    source = host.registry.build("source", "images", {"jpeg_decoder": decoder, "decode_threads": threads})
    return list(source.frames(str(folder)))


def _same(a: list[Frame | BadItem], b: list[Frame | BadItem]) -> None:
    assert [type(x).__name__ for x in a] == [type(x).__name__ for x in b]
    for x, y in zip(a, b, strict=True):
        if isinstance(x, BadItem):
            assert (x.source, x.error) == (y.source, y.error)
        else:
            assert x.meta == y.meta and x.image.device.type == "cpu" and torch.equal(x.image, y.image)


def test_torchcodec_gives_opencvs_frames_and_bad_items_across_batches(host, tmp_path):
    """40 real photos (more than one batch of 32) with a truncated JPEG, a text file named .jpg, a PNG, a
    greyscale and a CMYK JPEG among them: the same frames as OpenCV, pixel for pixel, in order, and the same
    bad items with the same messages."""
    photos = sorted(data_path("raccoon", "images").glob("*.jpg"))[:40]
    for i, p in enumerate(photos):
        shutil.copyfile(p, tmp_path / f"{i:02d}.jpg")
    (tmp_path / "03b.jpg").write_bytes(photos[3].read_bytes()[:1500])  # truncated: refused before any decoder
    (tmp_path / "07b.jpg").write_text("not an image\n")
    with Image.open(photos[5]) as im:
        im.save(tmp_path / "05b.png")
        im.convert("L").save(tmp_path / "05c.jpg", quality=90)  # greyscale: 3 equal channels either way
        im.convert("CMYK").save(tmp_path / "05d.jpg", quality=90)  # CMYK: left to OpenCV
    opencv = _frames(host, tmp_path, "opencv")
    assert len(opencv) == 45 and sum(isinstance(x, BadItem) for x in opencv) == 2
    _same(opencv, _frames(host, tmp_path, "torchcodec"))
    _same(opencv, _frames(host, tmp_path, "torchcodec", threads=1))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_exif_orientation_is_applied_as_opencv_applies_it(tmp_path, orientation):
    """A real photo tagged with each EXIF orientation: the TorchCodec path turns it upright exactly as OpenCV
    (``cv2.imread``, which applies the tag) does; 5-8 swap its width and height. (nvJPEG's path applies the
    tag with the same TorchCodec code after decoding.)"""
    photo = data_path("raccoon", "images", "raccoon-12.jpg")
    path = tmp_path / f"o{orientation}.jpg"
    with Image.open(photo) as im:
        exif = Image.Exif()
        exif[0x0112] = orientation
        im.save(path, quality=92, exif=exif)
        width, height = im.size
    assert takes_jpeg(path.read_bytes())
    theirs = torch.from_numpy(np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1].transpose(2, 0, 1)))
    assert theirs.shape[1:] == ((width, height) if orientation >= 5 else (height, width))
    source = visionkit.get_host().registry.build("source", "images", {"jpeg_decoder": "torchcodec"})
    (frame,) = source.frames(str(path))
    assert torch.equal(frame.image, theirs) and (frame.meta.width, frame.meta.height) == (theirs.shape[2],
                                                                                         theirs.shape[1])


def test_detect_with_torchcodec_writes_what_opencv_does(tmp_path, cli):
    """Through the CLI on the shipped samples: the JSONL of ``jpeg_decoder=torchcodec`` is OpenCV's, line for
    line."""
    lines = {}
    for decoder in ("opencv", "torchcodec"):
        out = tmp_path / decoder
        result = cli("detect", str(ROOT / "samples" / "images"), "--weights",
                         str(ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"), "--out", str(out), "--no-save",
                         "--set", f"sources.images.jpeg_decoder={decoder}")
        assert result.exit_code == 0, result.output
        lines[decoder] = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines["opencv"]) == 3 and lines["torchcodec"] == lines["opencv"]


def test_nvjpeg_without_a_gpu_is_one_line_naming_the_fix(tmp_path, cli):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: nvjpeg runs")
    result = cli("detect", str(ROOT / "samples" / "images"), "--weights",
                     str(ROOT / "samples" / "checkpoints" / "raccoon_frcnn.pt"), "--out", str(tmp_path / "o"),
                     "--set", "sources.images.jpeg_decoder=nvjpeg")
    assert result.exit_code != 0
    message = [line for line in result.output.splitlines() if "nvjpeg" in line]
    assert message and "no" in message[0] and "jpeg_decoder: opencv" in message[0], result.output
    assert "Traceback" not in result.output


def test_an_unknown_decoder_is_refused(host):
    with pytest.raises(ConfigError, match="jpeg_decoder"):
        host.registry.build("source", "images", {"jpeg_decoder": "pillow"})


def test_a_decoder_that_fails_where_opencv_decodes_warns_once_then_stops_the_run(host, tmp_path, monkeypatch):
    """TorchCodec failing on files OpenCV decodes is the decoder's fault (a build without nvJPEG, a CUDA that does
    not match torch's): the first such file gets one warning naming it and TorchCodec's reason, and when the
    first three all fail the source stops with one error, instead of quietly decoding everything with OpenCV.
    The failure is simulated in TorchCodec's own function (the library), once for one file, then for all."""
    import torchcodec.decoders

    from visionkit.errors import PluginError, VisionkitWarning

    photos = sorted(data_path("raccoon", "images").glob("*.jpg"))[:6]
    for i, p in enumerate(photos):
        shutil.copyfile(p, tmp_path / f"{i:02d}.jpg")
    real = torchcodec.decoders.decode_jpeg
    refused = {photos[1].read_bytes()}

    def flaky(sources, **kwargs):
        if any(bytes(s) in refused for s in (sources if isinstance(sources, list) else [sources])):
            raise RuntimeError("nvjpegDecode failed: 6")
        return real(sources, **kwargs)

    monkeypatch.setattr(torchcodec.decoders, "decode_jpeg", flaky)
    with pytest.warns(VisionkitWarning, match=r"could not decode .*01\.jpg \(nvjpegDecode failed: 6\); OpenCV"):
        frames = _frames(host, tmp_path, "torchcodec")
    _same(_frames(host, tmp_path, "opencv"), frames)  # the one file OpenCV decoded is OpenCV's, the rest TorchCodec's
    refused.update(p.read_bytes() for p in photos)
    with pytest.raises(PluginError, match=r"failed on each of the first 3 JPEGs.*use jpeg_decoder: opencv"), \
            pytest.warns(VisionkitWarning):
        _frames(host, tmp_path, "torchcodec")


def test_files_given_one_by_one_decode_in_batches_as_a_folder_does(host, tmp_path, monkeypatch):
    """``visionkit detect photos/*.jpg`` with the shell expanding the glob gives one input per file: the images
    source still decodes them 32 to a TorchCodec call (its ``frames_of``), not one by one, and gives the
    folder's frames and bad items, in order. The batch sizes are read off TorchCodec's own function."""
    import torchcodec.decoders

    from visionkit.pipeline import open_inputs

    photos = sorted(data_path("raccoon", "images").glob("*.jpg"))[:40]
    for i, p in enumerate(photos):
        shutil.copyfile(p, tmp_path / f"{i:02d}.jpg")
    (tmp_path / "07b.jpg").write_text("not an image\n")
    files = sorted(str(p) for p in tmp_path.iterdir())  # what the shell passes for tmp_path/*.jpg
    real, calls = torchcodec.decoders.decode_jpeg, []

    def counted(sources, **kwargs):
        calls.append(len(sources) if isinstance(sources, list) else 1)
        return real(sources, **kwargs)

    monkeypatch.setattr(torchcodec.decoders, "decode_jpeg", counted)
    config = {"sources": {"images": {"jpeg_decoder": "torchcodec", "decode_threads": 2}}}
    one_by_one = list(open_inputs(files, config, host))
    assert calls == [31, 9]  # 32 files, then 9; the text file (the 9th) is refused before any decoder
    folder = list(open_inputs([str(tmp_path)], {"sources": {"images": {"decode_threads": 1}}}, host))
    assert len(folder) == 41 and isinstance(folder[8], BadItem) and folder[8].source.endswith("07b.jpg")
    _same(folder, one_by_one)

