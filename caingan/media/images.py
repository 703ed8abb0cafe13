"""Image files in and out: any photo a user drops becomes RGB uint8, any failure an ImageLoadError.

Pillow decodes (it handles EXIF orientation, palettes, 16-bit, WebP, TIFF); cv2 is only used as a
fast resizer. Writes are atomic so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from caingan.errors import ExportError, ImageLoadError

# Pillow refuses > ~179 MP as a "decompression bomb"; real photos stay far below this bound.
MAX_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF"}


def _to_rgb8(img: Image.Image) -> np.ndarray:
    """Any Pillow mode → (H, W, 3) uint8; alpha is composited on white (what a viewer shows)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        top = 1.0 if a.max() <= 1.0 else 255.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode == "P":
        img = img.convert("RGBA")
    elif mode in ("LA", "PA", "La"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.ascontiguousarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))


def _fit(image: np.ndarray, max_side: int | None) -> np.ndarray:
    if not max_side:
        return image
    h, w = image.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return image
    import cv2
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _open(fp, name: str, max_side: int | None) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageLoadError(f"{name}: {w}×{h} is too large ({w * h / 1e6:.0f} MP; "
                                     f"the limit is {MAX_PIXELS / 1e6:.0f} MP)")
            if max_side and max(w, h) > max_side:
                img.draft("RGB", (max_side, max_side))  # JPEG: decode at 1/2..1/8 scale, cheap
            # ImageFile.LOAD_TRUNCATED_IMAGES stays False: a truncated file is an error, not grey.
            img.load()
            if max_side and max(img.size) > 2 * max_side and img.mode in ("RGB", "RGBA", "L"):
                factor = max(1, int(max(img.size) // max_side))
                img = img.reduce(factor)
            img = ImageOps.exif_transpose(img)
            return _fit(_to_rgb8(img), max_side)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageLoadError(f"{name}: image too large ({e})") from None
    except Image.DecompressionBombWarning as e:
        raise ImageLoadError(f"{name}: image too large ({e})") from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image, or a format this program cannot read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageLoadError(f"{name}: corrupt or truncated image ({e})") from None
    except MemoryError:
        raise ImageLoadError(f"{name}: not enough memory to decode this image") from None


def load_image(path, max_side: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB, upright per EXIF; `max_side` shrinks big photos while decoding."""
    path = Path(path)
    name = str(path)
    if not path.exists():
        raise ImageLoadError(f"{name}: file not found")
    if path.is_dir():
        raise ImageLoadError(f"{name}: is a folder, not an image")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageLoadError(f"{name}: cannot read ({e.strerror or e})") from None
    if size == 0:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    try:
        with open(path, "rb") as f:
            return _open(f, name, max_side)
    except PermissionError:
        raise ImageLoadError(f"{name}: permission denied") from None


def decode_image(data: bytes, name: str = "clipboard", max_side: int | None = None) -> np.ndarray:
    """Like load_image for bytes already in memory (clipboard, drag-and-drop, network)."""
    if not data:
        raise ImageLoadError(f"{name}: no image data (0 bytes)")
    return _open(io.BytesIO(bytes(data)), name, max_side)


def save_image(path, image: np.ndarray, quality: int = 95) -> Path:
    """Atomic write (temp file + os.replace); format from the extension; ExportError on failure."""
    path = Path(path)
    fmt = _SAVE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ExportError(f"{path}: unsupported image extension '{path.suffix}' "
                          f"(use one of {', '.join(sorted(_SAVE_FORMATS))})")
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ExportError(f"{path}: image must be uint8, got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ExportError(f"{path}: image must be (H, W), (H, W, 3) or (H, W, 4), got {a.shape}")
    img = Image.fromarray(np.ascontiguousarray(a))
    if fmt == "JPEG" and img.mode == "RGBA":
        img = img.convert("RGB")
    kw = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    tmp = None
    try:
        if not path.parent.is_dir():
            raise ExportError(f"{path}: folder {path.parent} does not exist")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            img.save(f, format=fmt, **kw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except ExportError:
        raise
    except OSError as e:
        raise ExportError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return path


__all__ = ["load_image", "decode_image", "save_image", "MAX_PIXELS"]
