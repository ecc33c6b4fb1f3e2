"""Sources of the visionkit_io plugin: images, video, stream, camera. Golden values come from the
written arrays, from OpenCV's own video decoder, and from the sample video's SOURCE.md
(car-detection.mp4: 377 frames, 12.5 fps, 768x432, H.264 + AAC)."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from visionkit_io.sources import CameraSource, ImageSource, ImagesParams
from visionkit_io.video import StreamParams, StreamSource, VideoParams, VideoSource

from tests.conftest import data_path as data
from visionkit.errors import ConfigError, InputError
from visionkit.plugins import Host
from visionkit.types import BadItem, Frame


@pytest.fixture(scope="module")
def car() -> Path:
    return data("videos", "car-detection.mp4")


@pytest.fixture(scope="module")
def car_frames(car) -> list[Frame | BadItem]:
    return list(VideoSource().frames(str(car)))


def split(items: list[Frame | BadItem]) -> tuple[list[Frame], list[BadItem]]:
    return [i for i in items if isinstance(i, Frame)], [i for i in items if isinstance(i, BadItem)]


def card(value: int, size: tuple[int, int] = (24, 32)) -> np.ndarray:
    """A flat RGB image whose red channel is ``value`` (to recognise it after decoding)."""
    img = np.zeros((*size, 3), np.uint8)
    img[..., 0] = value
    img[..., 1] = 100
    return img


def write_images(folder: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(card(10 * (i + 1))).save(path)


# -- images -------------------------------------------------------------------------------------

def test_accepts_routes_inputs_to_one_source(tmp_path):
    (tmp_path / "pics").mkdir()
    sources = [ImageSource(), VideoSource(), StreamSource(), CameraSource()]
    cases = {
        "a.jpg": "images", "b.PNG": "images", "list.txt": "images", str(tmp_path / "pics"): "images",
        "shots/*.jpg": "images", "shots/**/*": "images", "clip.mp4": "video", "clip.MKV": "video",
        "clips/*.mp4": "video", "rtsp://cam.local/live": "stream", "https://x.org/v.mp4": "stream",
        "0": "camera", "/dev/video2": "camera",
    }
    for uri, expected in cases.items():
        takers = [s.name for s in sources if s.accepts(uri)]
        assert takers == [expected], (uri, takers)
    assert not any(s.accepts("notes.docx") for s in sources)


def test_folder_natural_order_skips_non_images(tmp_path):
    write_images(tmp_path, ["img10.png", "img2.jpg", "img1.bmp", "sub/deep.png"])
    (tmp_path / "readme.md").write_text("not an image")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0")
    frames, bad = split(list(ImageSource().frames(str(tmp_path))))
    assert bad == []
    assert [Path(f.meta.source).name for f in frames] == ["img1.bmp", "img2.jpg", "img10.png"]
    assert [f.meta.index for f in frames] == [0, 1, 2]
    f = frames[0]
    assert f.meta.frame_index is None and f.meta.timestamp is None and f.meta.fps is None
    assert (f.meta.width, f.meta.height) == (32, 24) and f.image.shape == (3, 24, 32)
    assert int(f.image[0, 0, 0]) == 30 and int(f.image[1, 0, 0]) == 100  # img1.bmp was the 3rd written

    deep = split(list(ImageSource(ImagesParams(recursive=True)).frames(str(tmp_path))))[0]
    assert [Path(f.meta.source).name for f in deep] == ["img1.bmp", "img2.jpg", "img10.png", "deep.png"]


def test_folder_with_one_bad_file_reports_it_and_goes_on(tmp_path):
    write_images(tmp_path, ["a.png", "c.png"])
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    items = list(ImageSource().frames(str(tmp_path)))
    assert [type(i).__name__ for i in items] == ["Frame", "BadItem", "Frame"]
    assert items[1].source.endswith("b.jpg") and "b.jpg" in items[1].error
    assert [i.meta.index for i in items if isinstance(i, Frame)] == [0, 1]


def test_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    write_images(tmp_path, ["sub/a.png"])
    [bad] = list(ImageSource().frames(str(tmp_path)))
    assert isinstance(bad, BadItem)
    assert f"no images in {tmp_path}" in bad.error and ".jpg" in bad.error and "recursive" in bad.error
    empty = tmp_path / "empty"
    empty.mkdir()
    [bad] = list(ImageSource().frames(str(empty)))
    assert "no images in" in bad.error and "recursive" not in bad.error


def test_glob_patterns(tmp_path):
    write_images(tmp_path, ["a/x1.png", "a/x2.jpg", "a/b/x3.png", "y.png"])
    src = ImageSource()
    names = [Path(f.meta.source).name for f in split(list(src.frames(str(tmp_path / "a" / "*.png"))))[0]]
    assert names == ["x1.png"]
    names = [Path(f.meta.source).name for f in split(list(src.frames(str(tmp_path / "**" / "x?.*"))))[0]]
    assert names == ["x3.png", "x1.png", "x2.jpg"]  # natural order of the full paths: a/b/ < a/x
    [bad] = list(src.frames(str(tmp_path / "*.webp")))
    assert "no files match" in bad.error
    (tmp_path / "n.txt").write_text("x")
    [bad] = list(src.frames(str(tmp_path / "n*")))
    assert "no images match" in bad.error


def test_list_file(tmp_path):
    write_images(tmp_path, ["imgs/a.png", "imgs/b.png", "other/c.png"])
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4")
    lst = tmp_path / "lists" / "val.txt"
    lst.parent.mkdir()
    lst.write_text(f"# validation images\n\n../imgs/b.png\n  ../imgs/a.png  \n{tmp_path / 'other'}\n"
                   "../missing.png\n../doc.pdf\n", encoding="utf-8")
    items = list(ImageSource().frames(str(lst)))
    frames, bad = split(items)
    assert [Path(f.meta.source).name for f in frames] == ["b.png", "a.png", "c.png"]
    assert len(bad) == 2
    assert "no such file or directory" in bad[0].error and "val.txt" in bad[0].error
    assert "unsupported image type '.pdf'" in bad[1].error and ".jpg" in bad[1].error
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    assert "no paths in list file" in next(iter(ImageSource().frames(str(empty)))).error


def test_explicit_files_missing_or_unsupported(tmp_path):
    [bad] = list(ImageSource().frames(str(tmp_path / "gone.jpg")))
    assert bad.error == f"no such file or directory: {tmp_path / 'gone.jpg'}"
    odd = tmp_path / "scan.xyz"
    odd.write_bytes(b"data")
    [bad] = list(ImageSource().frames(str(odd)))
    assert "unsupported image type '.xyz'" in bad.error and ".png" in bad.error


def test_raccoon_glob_including_grayscale_images():
    pattern = str(data("raccoon", "images") / "raccoon-15?.jpg")
    frames, bad = split(list(ImageSource().frames(pattern)))
    assert bad == [] and len(frames) == 10
    assert Path(frames[0].meta.source).name == "raccoon-150.jpg"
    gray = frames[0].image
    assert torch.equal(gray[0], gray[1])
    for f in frames:  # size from an independent reader
        with Image.open(f.meta.source) as im:
            assert (f.meta.width, f.meta.height) == im.size


# -- video --------------------------------------------------------------------------------------

def test_video_all_frames_fps_and_timestamps(car_frames, car):
    frames, bad = split(car_frames)
    assert bad == []
    assert len(frames) == 377
    assert [f.meta.frame_index for f in frames] == list(range(377))
    assert all(f.meta.timestamp == pytest.approx(i / 12.5, abs=1e-9) for i, f in enumerate(frames))
    m = frames[0].meta
    assert (m.width, m.height, m.fps, m.extra["frame_rate"]) == (768, 432, 12.5, Fraction(25, 2))
    assert frames[0].image.shape == (3, 432, 768)
    # pixels against OpenCV's own FFmpeg decode of the same file
    cap = cv2.VideoCapture(str(car))
    try:
        for i in range(0, 377, 60):
            cap.set(cv2.CAP_PROP_POS_FRAMES, i)
            ok, bgr = cap.read()
            assert ok
            diff = np.abs(bgr[:, :, ::-1].astype(int) - frames[i].image.numpy().transpose(1, 2, 0))
            assert diff.mean() < 2.0, i
    finally:
        cap.release()


def test_video_stride(car, car_frames):
    frames, bad = split(list(VideoSource(VideoParams(stride=5)).frames(str(car))))
    assert bad == [] and len(frames) == 76
    assert [f.meta.frame_index for f in frames] == list(range(0, 377, 5))
    assert [f.meta.index for f in frames] == list(range(76))
    assert frames[3].meta.timestamp == pytest.approx(15 / 12.5)
    assert torch.equal(frames[3].image, car_frames[15].image)


def test_video_max_frames(car):
    frames = list(VideoSource(VideoParams(stride=2, max_frames=4)).frames(str(car)))
    assert [f.meta.frame_index for f in frames] == [0, 2, 4, 6]


def test_truncated_video_yields_frames_then_a_bad_item(tmp_path, car):
    cut = tmp_path / "cut.mp4"
    payload = car.read_bytes()
    cut.write_bytes(payload[: int(len(payload) * 0.4)])
    start = time.monotonic()
    items = list(VideoSource().frames(str(cut)))
    assert time.monotonic() - start < 30
    frames, bad = split(items)
    assert 50 < len(frames) < 377
    assert len(bad) == 1 and items[-1] is bad[0]
    assert f"after {len(frames)} frame(s) of 377" in bad[0].error and "truncated" in bad[0].error


def test_video_with_a_corrupt_middle_recovers_and_reports(tmp_path, car):
    payload = bytearray(car.read_bytes())
    n = len(payload)
    payload[n // 3: n // 3 + n // 5] = np.random.default_rng(0).integers(0, 256, n // 5, dtype=np.uint8).tobytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(payload))
    items = list(VideoSource().frames(str(broken)))
    frames, bad = split(items)
    assert len(bad) == 1 and items[-1] is bad[0] and "corrupt packet(s) skipped" in bad[0].error
    indices = [f.meta.frame_index for f in frames]
    assert indices == sorted(set(indices)) and indices[0] == 0
    assert indices[-1] == 376  # decoding went on past the damage, to the real last frame
    assert 150 < len(frames) < 377
    assert frames[-1].meta.timestamp == pytest.approx(376 / 12.5)


def test_garbage_and_missing_videos(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    [bad] = list(VideoSource().frames(str(junk)))
    assert "junk.mp4" in bad.error and "\n" not in bad.error
    [bad] = list(VideoSource().frames(str(tmp_path / "none.mov")))
    assert "no such file or directory" in bad.error


def _write_video(path: Path, codec: str, frames: list[np.ndarray], rate: int = 10, audio_first: bool = False,
                 pix_fmt: str = "yuv420p") -> None:
    with av.open(str(path), "w") as out:
        audio = out.add_stream("aac", rate=8000) if audio_first else None
        stream = out.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if audio is not None:
            samples = av.AudioFrame.from_ndarray(np.zeros((1, 8000), np.float32), format="fltp", layout="mono")
            samples.sample_rate, samples.pts = 8000, 0
            for packet in audio.encode(samples):
                out.mux(packet)
            for packet in audio.encode():
                out.mux(packet)


def _moving_square(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    out = []
    for i in range(n):
        img = np.full((h, w, 3), 40, np.uint8)
        img[8:24, 4 + 6 * i: 20 + 6 * i] = (230, 200, 30)
        out.append(img)
    return out


@pytest.mark.parametrize(("ext", "codec", "pix_fmt"), [
    (".mkv", "libx264", "yuv420p"), (".avi", "mpeg4", "yuv420p"), (".mov", "libx264", "yuv420p"),
    (".webm", "libvpx-vp9", "yuv420p"), (".mp4", "libx264", "yuv444p"),
])
def test_containers_against_opencv(tmp_path, ext, codec, pix_fmt):
    path = tmp_path / f"clip{ext}"
    _write_video(path, codec, _moving_square(6), pix_fmt=pix_fmt)
    frames, bad = split(list(VideoSource().frames(str(path))))
    assert bad == [] and len(frames) == 6
    assert frames[0].meta.fps == 10.0 and frames[5].meta.timestamp == pytest.approx(0.5)
    cap = cv2.VideoCapture(str(path))
    try:
        for f in frames:
            ok, bgr = cap.read()
            assert ok
            assert np.abs(bgr[:, :, ::-1].astype(int) - f.image.numpy().transpose(1, 2, 0)).mean() < 3.0
    finally:
        cap.release()


def test_video_stream_is_found_when_audio_comes_first(tmp_path):
    path = tmp_path / "audio_first.mkv"
    _write_video(path, "libx264", _moving_square(5), audio_first=True)
    with av.open(str(path)) as check:
        assert [s.type for s in check.streams] == ["audio", "video"]
    frames, bad = split(list(VideoSource().frames(str(path))))
    assert bad == [] and len(frames) == 5 and frames[0].image.shape == (3, 48, 64)


# -- stream -------------------------------------------------------------------------------------

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    """A local HTTP server for the sample videos; it shuts itself down after 60 s at most."""
    handler = functools.partial(_QuietHandler, directory=str(data("videos")))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    guard = threading.Timer(60, server.shutdown)
    guard.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        guard.cancel()
        server.shutdown()
        server.server_close()


def test_stream_over_http(http_server, car_frames):
    url = f"{http_server}/car-detection.mp4"
    frames, bad = split(list(StreamSource(StreamParams(stride=25, timeout=5)).frames(url)))
    assert bad == [] and len(frames) == 16
    assert [f.meta.frame_index for f in frames] == list(range(0, 377, 25))
    assert frames[0].meta.source == url and frames[0].meta.fps == 12.5
    assert torch.equal(frames[4].image, car_frames[100].image)
    [bad] = list(StreamSource(StreamParams(timeout=5)).frames(f"{http_server}/missing.mp4"))
    assert "404" in bad.error


def test_stream_that_never_answers_times_out():
    with socket.socket() as silent:  # accepts connections, never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        start = time.monotonic()
        [bad] = list(StreamSource(StreamParams(timeout=1)).frames(f"http://127.0.0.1:{silent.getsockname()[1]}/v.mp4"))
        assert time.monotonic() - start < 10
    assert "no data within 1 s" in bad.error


def test_stream_that_stalls_midway_yields_frames_then_a_bad_item(car):
    payload = car.read_bytes()
    release = threading.Event()

    class Stalling(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 3])
            self.wfile.flush()
            release.wait(15)  # bounded: the test sets it when done

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        start = time.monotonic()
        items = list(StreamSource(StreamParams(timeout=1)).frames(f"http://127.0.0.1:{server.server_address[1]}/c"))
        assert time.monotonic() - start < 15
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    frames, bad = split(items)
    assert 20 < len(frames) < 377 and len(bad) == 1 and items[-1] is bad[0]
    assert "stopped after" in bad[0].error


# -- camera and registration --------------------------------------------------------------------

def test_camera_that_cannot_open_raises_input_error():
    source = CameraSource()
    with pytest.raises(InputError, match="cannot open camera 63") as info:
        next(iter(source.frames("63")))
    assert "\n" not in str(info.value)


def test_sources_registered_with_validated_params():
    host = Host(entry_points=False, allow=["visionkit_io"])
    assert host.registry.names("source") == ["images", "video", "stream", "camera"]
    assert host.registry.build("source", "video", {"stride": 3}).params.stride == 3
    assert host.registry.build("source", "videos", {}).name == "video"
    with pytest.raises(ConfigError, match="stride must be >= 1"):
        host.registry.build("source", "video", {"stride": 0})
    with pytest.raises(ConfigError, match="did you mean 'recursive'"):
        host.registry.build("source", "images", {"recursiv": True})
    with pytest.raises(ConfigError, match="timeout"):
        host.registry.build("source", "stream", {"timeout": 0})


def test_copied_video_with_other_name_and_glob(tmp_path, car):
    shutil.copy(car, tmp_path / "b.mp4")
    (tmp_path / "a.mp4").write_bytes(b"")
    items = list(VideoSource(VideoParams(stride=100)).frames(str(tmp_path / "*.mp4")))
    assert isinstance(items[0], BadItem) and items[0].source.endswith("a.mp4")
    assert [f.meta.frame_index for f in items[1:]] == [0, 100, 200, 300]


def test_images_decoded_in_threads_come_in_order_with_the_same_pixels_and_bad_items(host, tmp_path):
    """``sources.images.decode_threads``: a folder decoded 3 at a time gives what one thread gives, frame for
    frame (pixels, order, sizes) with its unreadable files in their places; stopping early does not hang."""
    photos = sorted(data("raccoon", "images").glob("*.jpg"))[:12]
    for i, p in enumerate(photos):
        shutil.copyfile(p, tmp_path / f"{i:02d}.jpg")
    (tmp_path / "03b.jpg").write_bytes(photos[3].read_bytes()[:1500])  # truncated
    (tmp_path / "07b.jpg").write_text("not an image\n")
    runs = {}
    for threads in (1, 3):
        source = host.registry.build("source", "images", {"decode_threads": threads})
        runs[threads] = list(source.frames(str(tmp_path)))
    one, three = runs[1], runs[3]
    assert [type(x).__name__ for x in one] == [type(x).__name__ for x in three]
    assert sum(isinstance(x, BadItem) for x in one) == 2 and len(one) == 14
    for a, b in zip(one, three, strict=True):
        if isinstance(a, BadItem):
            assert (a.source, a.error) == (b.source, b.error)
        else:
            assert a.meta == b.meta and torch.equal(a.image, b.image)
    stopped = host.registry.build("source", "images", {"decode_threads": 3}).frames(str(tmp_path))
    assert isinstance(next(stopped), Frame)
    stopped.close()  # the pool's queued decodes are dropped
    with pytest.raises(ConfigError, match="decode_threads"):
        host.registry.build("source", "images", {"decode_threads": 0})


def test_files_given_one_by_one_decode_ahead_in_the_decode_threads(host, monkeypatch):
    """With OpenCV, ``decode_threads`` 2 decodes files given one by one two at a time, as it does a folder's
    (before, each file was a ``frames(uri)`` call of its own: one decode in flight). Seen in ``cv2.imdecode``
    itself: its first call waits (5 s at most) for a second one to arrive while it is still decoding."""
    from visionkit.pipeline import open_inputs

    files = [str(p) for p in sorted(data("raccoon", "images").glob("*.jpg"))[:8]]
    real, barrier, met = cv2.imdecode, threading.Barrier(2, timeout=5), []

    def together(*args):
        if not met:
            try:
                barrier.wait()
                met.append(True)
            except threading.BrokenBarrierError:
                met.append(False)
        return real(*args)

    monkeypatch.setattr(cv2, "imdecode", together)
    frames = list(open_inputs(files, {"sources": {"images": {"decode_threads": 2}}}, host))
    assert met[0] is True, "the second file did not start decoding while the first was"
    assert [f.meta.source for f in frames] == files and [f.meta.index for f in frames] == list(range(8))
