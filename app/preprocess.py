"""Decode and validate an uploaded image, then preprocess it exactly as the manifest says (numpy + Pillow only).

Checks that need only the header (format, pixel count, smallest side) run before any pixel is decoded, so a
40000 x 40000 PNG of a few KB is refused without allocating gigabytes. The colour conversion and the array are
`personid.imaging`'s, the same code training's eval transform runs.

Memory: a few KB of file can hold 25 megapixels, so what bounds the memory of decoding is the pixels decoded at
once, not the bytes uploaded. Every decode first reserves its pixels from one `PixelBudget` per process
(`configure_decoding`) and waits while others hold it; and a JPEG far larger than the model input is decoded at
1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling, Pillow's `draft`), keeping `DRAFT_MARGIN` (3) times the model
input in each side so that the bilinear resize still averages several source pixels into each model pixel.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from personid.imaging import Box, to_array, to_rgb, training_crop
from personid.manifest import InputSpec

# MPO is what many phone cameras write: a JPEG with extra frames; the first frame is the photo.
ACCEPTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF")
ACCEPTED_MEDIA_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff", "image/gif")
# What Pillow raises on corrupt or truncated data, depending on the decoder.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, IndexError, TypeError, EOFError)
# Decoded sides kept per model input side when a JPEG is decoded at reduced size: at 3x, embeddings of large crops
# stay as close to a full decode (cosine >= 0.9995) as re-encoding the JPEG at another quality moves them.
DRAFT_MARGIN = 3
# EXIF orientations that swap width and height (transpose, rotate 90 or 270).
SIDEWAYS = frozenset({5, 6, 7, 8})
# glibc's mallopt parameter, and the size from which buffers get their own mapping (`return_large_buffers`).
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1024 * 1024


class ImageError(ValueError):
    """An upload that is not an acceptable image; `status` is the HTTP status it maps to."""

    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int
    min_side: int


class PixelBudget:
    """Pixels being decoded at once across all requests; a decode that does not fit waits, in arrival order.

    First come, first served: a large image waiting at the head is not overtaken by a stream of small ones.
    A request asking for more than the whole budget is given all of it (it never waits forever). Decoding runs
    in worker threads, so that is where the wait happens (a `threading.Condition`), never on the event loop;
    a request decodes its images one after the other, so it never holds one reservation while waiting for another.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self.peak = 0  # most pixels ever reserved at once: what tests and benchmarks read
        self._changed = threading.Condition()
        self._queue: deque[object] = deque()

    @contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        """Hold `pixels` of the budget for the duration of the block (thread-safe, blocking)."""
        pixels = min(pixels, self.capacity)
        ticket = object()
        with self._changed:
            self._queue.append(ticket)
            self._changed.wait_for(lambda: self._queue[0] is ticket and self.in_use + pixels <= self.capacity)
            self._queue.popleft()
            self.in_use += pixels
            self.peak = max(self.peak, self.in_use)
            self._changed.notify_all()  # the next in line may fit as well
        try:
            yield
        finally:
            with self._changed:
                self.in_use -= pixels
                self._changed.notify_all()


_budget = PixelBudget(50_000_000)


def configure_decoding(max_pixels: int, pixel_budget: int) -> PixelBudget:
    """Per process, like memory: make Pillow's own bomb guard agree with ours (it raises at 2x its limit, warns
    above it), size the decode budget every request of this process shares, and have freed image buffers given
    back to the system (`return_large_buffers`)."""
    global _budget
    Image.MAX_IMAGE_PIXELS = max_pixels
    _budget = PixelBudget(pixel_budget)
    return_large_buffers()
    return _budget


def return_large_buffers() -> bool:
    """Keep every allocation of `MMAP_THRESHOLD_BYTES` or more in its own mapping, unmapped when freed (glibc's
    `mallopt`; False where there is none, e.g. musl or macOS).

    glibc raises its mmap threshold after the first large free (up to 32 MB), and from then on image-sized
    buffers come from per-thread arenas and stay resident: 32 decodes of 25 megapixels in the worker threads
    left 2.2 GB resident after they had finished, budget or not. A fixed threshold turns that off."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))


def read_header(data: bytes, limits: ImageLimits) -> Image.Image:
    """Bytes -> an opened, not yet decoded Pillow image whose header passed every check, or `ImageError`."""
    if not data:
        raise ImageError(422, "empty-image", "the uploaded file is empty")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageError(413, "image-too-large", f"{exc}; the limit is {limits.max_pixels} pixels") from exc
    except (UnidentifiedImageError, *DECODE_ERRORS) as exc:
        raise ImageError(
            422, "not-an-image", f"the file is not an image we can read (accepted: {', '.join(ACCEPTED_FORMATS)})"
        ) from exc
    if image.format not in ACCEPTED_FORMATS:
        raise ImageError(
            415,
            "unsupported-format",
            f"{image.format} images are not accepted; use one of {', '.join(ACCEPTED_FORMATS)}",
        )
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageError(
            413,
            "image-too-large",
            f"the image is {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}",
        )
    if min(width, height) < limits.min_side:
        raise ImageError(
            422,
            "image-too-small",
            f"the image is {width}x{height}; each side must be at least {limits.min_side} pixels",
        )
    return image


def decode(image: Image.Image) -> None:
    """Decode the pixels of an image `read_header` opened."""
    try:
        image.load()
    except DECODE_ERRORS as exc:
        raise ImageError(422, "corrupt-image", f"the {image.format} image is truncated or corrupt: {exc}") from exc


def open_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Bytes -> fully decoded Pillow image at full size, or `ImageError` saying what is wrong with it."""
    image = read_header(data, limits)
    decode(image)
    return image


def reduce_jpeg(image: Image.Image, spec: InputSpec) -> None:
    """Have a JPEG at least 2 x `DRAFT_MARGIN` x the model input in each side decoded at 1/2, 1/4 or 1/8 of its
    size, keeping `DRAFT_MARGIN` x the input per side (in the upright orientation EXIF gives it). Smaller images
    and other formats decode as they are, so their preprocessing stays bit-for-bit training's."""
    if image.format not in ("JPEG", "MPO"):
        return
    width, height = DRAFT_MARGIN * spec.width, DRAFT_MARGIN * spec.height
    try:
        orientation = image.getexif().get(0x0112)
    except DECODE_ERRORS:
        return  # unreadable EXIF: decoded in full, and `to_rgb` says what is wrong with it
    if orientation in SIDEWAYS:
        width, height = height, width
    if min(image.width // width, image.height // height) >= 2:
        image.draft(None, (width, height))


def _decoded_rgb(image: Image.Image) -> Image.Image:
    """The pixels of an image `read_header` opened, as RGB; call within a decode-budget reservation."""
    decode(image)
    try:
        return to_rgb(image)
    except DECODE_ERRORS as exc:
        raise ImageError(422, "corrupt-image", f"the image could not be converted to RGB: {exc}") from exc


def preprocess(data: bytes, spec: InputSpec, limits: ImageLimits) -> np.ndarray:
    """Uploaded bytes -> the model's 3 x H x W input row; `ImageError` for anything unacceptable.

    The pixels are reserved from the process's decode budget from decoding until the row exists."""
    image = read_header(data, limits)
    reduce_jpeg(image, spec)
    with _budget.reserve(image.width * image.height):
        return to_array(_decoded_rgb(image), spec)


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of an image `read_header` opened, as it is shown: after its EXIF rotation, if any."""
    try:
        orientation = image.getexif().get(0x0112)
    except DECODE_ERRORS:
        orientation = None
    return (image.height, image.width) if orientation in SIDEWAYS else image.size


def preprocess_crops(
    image: Image.Image, boxes: list[Box], spec: InputSpec
) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A frame `read_header` opened + person boxes in its upright pixels -> one model row per box, each cut with
    the training crop's framing (`personid.imaging.training_crop`), and the crop rectangles cut.

    Decoded at full size (each crop needs the frame's own pixels), within the process's decode budget."""
    with _budget.reserve(image.width * image.height):
        rgb = _decoded_rgb(image)
        crops = [training_crop(box, rgb.size, spec.width / spec.height) for box in boxes]
        rows = [to_array(rgb.crop(crop), spec) for crop in crops]
    return np.stack(rows), crops
