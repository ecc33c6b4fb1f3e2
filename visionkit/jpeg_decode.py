"""Decoding JPEG files in batches through TorchCodec: on a GPU with nvJPEG (``jpeg_decoder: nvjpeg``), or on the
CPU with its libjpeg-turbo (``jpeg_decoder: torchcodec``, the same path on the CPU).

Used by the ``images`` source instead of OpenCV. What stays the same whichever decodes:

* **The checks.** A file is read and refused exactly as :func:`visionkit.imageio.decode_image` refuses it (missing,
  empty, truncated, oversized, ...), before any decoder sees it (:func:`visionkit.imageio.check_encoded`).
* **The orientation.** TorchCodec applies the EXIF orientation itself, on the CPU and after nvJPEG on the GPU
  (its ``DecodeJpegCuda.cpp``), as OpenCV does (tested against OpenCV on all eight orientations, on the CPU).
* **The rest goes to OpenCV.** Only 8-bit greyscale and colour JPEGs take this path: CMYK and YCCK JPEGs, 12-bit
  ones, PNGs and the other formats are decoded by OpenCV as before, and so is a file TorchCodec fails on (where
  OpenCV fails too, its one-line error is what the run reports). A file TorchCodec fails on and OpenCV decodes
  is the decoder's fault: the first gets a warning, and when the first three all do the run stops
  (:class:`DecoderFaults`), rather than quietly decoding everything with OpenCV.
* **Batches** are the JPEGs of up to 32 files in a row: of one input (a folder, glob or ``.txt`` list), and across
  inputs given one by one (``photos/*.jpg`` expanded by the shell, a torchrun rank's share of a folder), which
  the host hands the source at once (its ``frames_of``).

Pixels: TorchCodec on the CPU gives OpenCV's pixels bit for bit (both are libjpeg-turbo with the same IDCT and
upsampling; checked on the raccoon photos). nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's by a
grey level or two, so detections on GPU-decoded images can differ slightly from the CPU's.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence

import torch

from visionkit.errors import ConfigError, PluginError, VisionkitWarning

__all__ = ["JPEG_DECODERS", "takes_jpeg", "decode_jpegs", "decoder_device", "SideStream", "DecoderFaults"]

#: values of the ``images`` source's ``jpeg_decoder``
JPEG_DECODERS: tuple[str, ...] = ("opencv", "torchcodec", "nvjpeg")


def takes_jpeg(data: bytes) -> bool:
    """Whether this path decodes ``data``: an 8-bit greyscale or colour (YCbCr or RGB) JPEG. Not CMYK, YCCK or
    12-bit JPEGs, other formats, or a header Pillow cannot read (no pixels are decoded to tell): OpenCV
    decodes those, or says what is wrong with them."""
    if data[:3] != b"\xff\xd8\xff":
        return False
    from PIL import JpegImagePlugin

    try:
        with JpegImagePlugin.JpegImageFile(io.BytesIO(data)) as image:
            return image.mode in ("L", "RGB") and image.bits == 8
    except Exception:  # any header Pillow does not take
        return False


def decoder_device(decoder: str) -> torch.device:
    """The device ``jpeg_decoder`` decodes on: the CPU for ``torchcodec``, for ``nvjpeg`` this process's GPU
    (``cuda:LOCAL_RANK`` under torchrun, else the calling thread's current CUDA device: a run's decode thread
    is put on the run's device, ``--device cuda:1`` included, by :class:`visionkit.runner.Runner`). A
    :class:`~visionkit.errors.ConfigError` for ``nvjpeg`` without a GPU and for either without TorchCodec."""
    try:
        import torchcodec.decoders  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"config: sources.images.jpeg_decoder {decoder} needs TorchCodec ({exc}); install it "
                          "with pip install 'visionkit[gpu]', or use jpeg_decoder: opencv") from None
    if decoder == "torchcodec":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError("config: sources.images.jpeg_decoder nvjpeg decodes on a CUDA GPU and this machine has "
                          "none; use jpeg_decoder: opencv (the default)")
    from visionkit.workflows.distributed import rank_device

    device = rank_device(torch.device("cuda"))
    return device if device.index is not None else torch.device("cuda", torch.cuda.current_device())


class DecoderFaults:
    """How often TorchCodec failed on a JPEG that OpenCV then decoded: that is the decoder's fault, not the file's.
    The first one is a :class:`~visionkit.errors.VisionkitWarning` naming the file and TorchCodec's reason;
    when the first :data:`SYSTEMATIC` JPEGs all fail so, it is a :class:`~visionkit.errors.PluginError` (a
    TorchCodec without nvJPEG, a CUDA that does not match torch's: every frame would quietly be OpenCV's)."""

    SYSTEMATIC = 3

    def __init__(self, decoder: str) -> None:
        self.decoder, self.ok, self.failed = decoder, 0, 0

    def decoded(self, count: int) -> None:
        self.ok += count

    def fell_back(self, name: str, error: BaseException) -> None:
        self.failed += 1
        reason = (str(error).strip().splitlines() or [type(error).__name__])[-1][:200]
        if self.ok == 0 and self.failed >= self.SYSTEMATIC:
            raise PluginError(f"jpeg_decoder {self.decoder}: TorchCodec failed on each of the first {self.failed} "
                              f"JPEGs, which OpenCV decodes ({reason}); it does not work on this machine: use "
                              "jpeg_decoder: opencv") from error
        if self.failed == 1:
            warnings.warn(f"jpeg_decoder {self.decoder}: TorchCodec could not decode {name} ({reason}); OpenCV "
                          "decoded it (this is said once a run)", VisionkitWarning, stacklevel=2)


class SideStream:
    """A thread's own CUDA stream for its copies and decodes, so that they overlap the model's work on its stream:
    ``with side: ...`` runs the block's CUDA work there and waits for it at the end, so that what it made is
    complete for any stream. A no-op off CUDA. (The decode thread's: this module's batches and
    :func:`visionkit.inference.frame_stager`'s copies.)"""

    def __init__(self, device: torch.device) -> None:
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def __enter__(self) -> None:
        if self.stream is not None:
            self._context = torch.cuda.stream(self.stream)
            self._context.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.stream is not None:
            self._context.__exit__(*exc)
            self.stream.synchronize()  # the decoded pixels are complete when the frame leaves the decode thread


def decode_jpegs(encoded: Sequence[bytes], device: torch.device, stream: SideStream | None = None
                 ) -> list[torch.Tensor]:
    """JPEGs (checked, and taken by :func:`takes_jpeg`) decoded as one TorchCodec call on ``device``, upright:
    ``uint8`` RGB ``[3, H, W]`` each, on ``device``. Raises whatever TorchCodec raises (the caller decodes one
    at a time then, and hands a failure to OpenCV)."""
    from torchcodec.decoders import decode_jpeg

    with stream if stream is not None else SideStream(device):
        # contiguous: TorchCodec turns EXIF orientations 5-8 with a transposed view
        return [image.contiguous() for image in decode_jpeg(list(encoded), mode="RGB", device=device)]
