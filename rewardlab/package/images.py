"""Checking image bytes before anything is stored: size, pixel count from the header, then a full decode."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

# Pillow format name -> the extension the stored file gets. Only these decoders are ever tried.
ALLOWED_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}


class ImageRejectedError(ValueError):
    """The bytes are not an image RewardLab accepts; the message says why (the caller names the image)."""


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    width: int
    height: int
    format: str
    ext: str
    size_bytes: int


def inspect_image(data: bytes, *, max_pixels: int, max_bytes: int) -> ImageInfo:
    """Return what an image is, or raise ImageRejectedError; never decodes more pixels than `max_pixels`.

    The pixel count is read from the header first, so a small file that claims a huge canvas (a
    decompression bomb) is refused before any pixel is decoded. Pillow's own bomb check also runs, as an
    error: it can only be stricter than ours when `max_pixels` is set above Pillow's limit.
    """
    if len(data) > max_bytes:
        raise ImageRejectedError(f"{len(data)} bytes; the limit is {max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(ALLOWED_FORMATS)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageRejectedError(f"{width}x{height} = {width * height} pixels; the limit is {max_pixels}")
                image.load()
                image_format = image.format or ""
    except ImageRejectedError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageRejectedError(f"not an image in one of the formats {', '.join(ALLOWED_FORMATS)}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejectedError(f"too many pixels ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejectedError(f"cannot be decoded ({exc})") from exc
    return ImageInfo(
        sha256=hashlib.sha256(data).hexdigest(),
        width=width,
        height=height,
        format=image_format,
        ext=ALLOWED_FORMATS[image_format],
        size_bytes=len(data),
    )
