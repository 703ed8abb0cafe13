"""Image files in and out: any photo a user drops becomes RGB uint8, any failure an ImageLoadError.

Pillow decodes (it handles EXIF orientation, palettes, 16-bit, WebP, TIFF); cv2 is only used as a
fast resizer. Writes are atomic so a crash never leaves a half-written file under the final name.

Memory is bounded by the *output*: every load is capped at DEFAULT_MAX_SIDE unless the caller asks
otherwise, JPEGs decode at 1/2..1/8 scale (draft), and big PNGs decode in bands of rows that are
shrunk as they arrive (a 14000² RGBA PNG once took 11.8 GB: Pillow's full-size RGBA plus float32
copies for the alpha blend, ~60 bytes per pixel). Other formats decode at full size once (≤ 4 bytes
per pixel, ≤ MAX_PIXELS), and are converted to RGB in row chunks.
"""

from __future__ import annotations

import io
import math
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from caingan.errors import ExportError, ImageLoadError
from caingan.files import atomic_write

# Pillow refuses > ~179 MP as a "decompression bomb"; real photos stay far below this bound.
MAX_PIXELS = 200_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# load_image's default bound on the longer side (67 MP, 200 MB as RGB): a 48 MP phone photo
# (8000×6000) stays native, anything larger is shrunk while decoding. max_side=None: no bound.
DEFAULT_MAX_SIDE = 8192
_CHUNK_PIXELS = 1 << 20           # RGB conversion works on row chunks of about this many pixels
_STREAM_MIN_PIXELS = 1 << 20      # PNGs larger than this decode in bands of rows
_BAND_BYTES = 1 << 20             # raw bytes per band (filtered rows)
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}     # colour type → samples per pixel
_EXIF_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                   4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                   6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
                   8: Image.Transpose.ROTATE_90}

_SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF"}


def _to_rgb8(img: Image.Image) -> np.ndarray:
    """Any Pillow mode → (H, W, 3) uint8; alpha is composited on white (what a viewer shows).

    Large images are converted in row chunks: np.asarray of a whole 200 MP RGBA image plus the
    float blend would cost ~30 bytes per pixel on top of Pillow's own copy.
    """
    w, h = img.size
    mode = img.mode
    top = None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        top = 65535.0 if mode.startswith("I;16") or img.getextrema()[1] > 255 else 255.0
    elif mode == "F":
        top = 1.0 if img.getextrema()[1] <= 1.0 else 255.0
    if w * h <= _CHUNK_PIXELS:
        return _to_rgb8_chunk(img, top)
    out = np.empty((h, w, 3), np.uint8)
    rows = max(1, _CHUNK_PIXELS // max(1, w))
    for y in range(0, h, rows):
        out[y:y + rows] = _to_rgb8_chunk(img.crop((0, y, w, min(h, y + rows))), top)
    return out


def _to_rgb8_chunk(img: Image.Image, top: float | None) -> np.ndarray:
    mode = img.mode
    if top is not None:                       # 16-bit / 32-bit integer or float grey
        a = np.asarray(img, dtype=np.float64)
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if mode in ("P", "LA", "PA", "La"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa"):
        rgba = np.asarray(img.convert("RGBA"))
        alpha = rgba[..., 3:4]
        if alpha.min() == 255:
            return np.ascontiguousarray(rgba[..., :3])
        # round(rgb·a/255 + 255·(1 − a/255)) in integers: the sum stays below 2¹⁶
        a16 = alpha.astype(np.uint16)
        rgb = rgba[..., :3] * a16 + (255 - a16) * np.uint16(255) + np.uint16(127)
        return np.ascontiguousarray((rgb // np.uint16(255)).astype(np.uint8))
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


def _out_size(w: int, h: int, max_side: int | None) -> tuple[int, int]:
    s = min(1.0, max_side / max(w, h)) if max_side else 1.0
    return max(1, round(w * s)), max(1, round(h * s))


def _png_chunk(tag: bytes, data: bytes, crc: bool = True) -> bytes:
    """A PNG chunk; Pillow never checks an IDAT chunk's CRC, so bands skip computing it."""
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)) if crc else 0))


class _PngStream:
    """A non-interlaced 8-bit PNG decoded a band of rows at a time, never whole.

    zlib inflates the IDAT stream band by band; each band (with the previous row, unfiltered, as
    context for the Up/Average/Paeth filters) is wrapped into a small PNG that Pillow decodes, so
    palettes, transparency and every filter type are handled by Pillow itself.
    """

    def __init__(self, fp):
        self.fp = fp
        fp.seek(0)
        if fp.read(8) != _PNG_SIG:
            raise ValueError("not a PNG")
        self.header = b""
        self.extra = []          # PLTE, tRNS: what decoding a band needs
        self.exif = None
        self.first_idat = None
        while True:
            head = fp.read(8)
            if len(head) < 8:
                raise EOFError("PNG ends before its image data")
            length, tag = struct.unpack(">I4s", head)
            if tag == b"IDAT":
                self.first_idat = (fp.tell(), length)
                break
            data = fp.read(length)
            fp.seek(4, os.SEEK_CUR)              # CRC
            if tag == b"IHDR":
                self.header = data
            elif tag in (b"PLTE", b"tRNS"):
                self.extra.append(_png_chunk(tag, data))
            elif tag == b"eXIf":
                self.exif = data
        (self.width, self.height, self.depth, self.ctype, _c, _f,
         self.interlace) = struct.unpack(">IIBBBBB", self.header[:13])
        self.stride = self.width * _PNG_CHANNELS.get(self.ctype, 0)

    @property
    def supported(self) -> bool:
        return self.depth == 8 and self.interlace == 0 and self.ctype in _PNG_CHANNELS

    def _idat(self):
        """The IDAT payloads in order, read lazily (later eXIf chunks are remembered)."""
        pos, length = self.first_idat
        fp = self.fp
        fp.seek(pos)
        while True:
            data = fp.read(length)
            if len(data) < length:
                raise EOFError("PNG image data is truncated")
            yield data
            fp.seek(4, os.SEEK_CUR)
            head = fp.read(8)
            if len(head) < 8:
                return
            length, tag = struct.unpack(">I4s", head)
            while tag != b"IDAT":
                if tag == b"IEND":
                    return
                data = fp.read(length)
                if tag == b"eXIf":
                    self.exif = data
                fp.seek(4, os.SEEK_CUR)
                head = fp.read(8)
                if len(head) < 8:
                    return
                length, tag = struct.unpack(">I4s", head)

    def bands(self):
        """(y0, (n, W, 3) uint8 RGB) for consecutive bands of rows."""
        row = self.stride + 1
        per_band = max(1, min(self.height, _BAND_BYTES // row))
        inflate = zlib.decompressobj()
        idat = self._idat()
        pending = b""
        context = None                           # previous row, unfiltered
        y = 0
        while y < self.height:
            n = min(per_band, self.height - y)
            need = n * row
            parts, have = [pending], len(pending)
            while have < need:
                chunk = inflate.unconsumed_tail or (None if inflate.eof else next(idat, None))
                if chunk is None:
                    raise EOFError(f"PNG image data is truncated (row {y + have // row} "
                                   f"of {self.height})")
                out = inflate.decompress(chunk, need - have)
                parts.append(out)
                have += len(out)
            data = b"".join(parts)
            pending = data[need:]
            filtered = data[:need]
            ctx = 0 if context is None else 1
            raw = (b"\0" + context if context is not None else b"") + filtered
            ihdr = struct.pack(">IIBBBBB", self.width, n + ctx, 8, self.ctype, 0, 0, 0)
            png = (_PNG_SIG + _png_chunk(b"IHDR", ihdr) + b"".join(self.extra)
                   + _png_chunk(b"IDAT", zlib.compress(raw, 0), crc=False) + _png_chunk(b"IEND", b""))
            with Image.open(io.BytesIO(png)) as band:
                band.load()
                h = band.size[1]
                context = band.crop((0, h - 1, self.width, h)).tobytes()
                if len(context) != self.stride:   # a mode whose bytes are not the raw samples
                    raise ValueError("unsupported PNG layout for banded decoding")
                rgb = _to_rgb8(band)[ctx:]
            yield y, rgb
            y += n

    def decode(self, max_side: int | None) -> np.ndarray:
        """The whole image at ≤ max_side (area-averaged), holding only the output and one band."""
        import cv2
        w, h = self.width, self.height
        ow, oh = _out_size(w, h, max_side)
        out = np.empty((oh, ow, 3), np.uint8)
        if (ow, oh) == (w, h):
            for y, rgb in self.bands():
                out[y:y + len(rgb)] = rgb
            return out
        s = h / oh                                # source rows per output row (≥ 1)
        carry_j, carry = -1, None
        for y0, rgb in self.bands():
            n = len(rgb)
            if ow != w:
                rgb = cv2.resize(rgb, (ow, n), interpolation=cv2.INTER_AREA)
            rows = rgb.reshape(n, ow * 3).astype(np.float32)
            last = y0 + n >= h
            j0 = min(oh - 1, int(y0 / s))
            j1 = oh if last else min(oh, math.ceil((y0 + n) / s))
            js = np.arange(j0, j1, dtype=np.float64)[:, None]
            ys = np.arange(y0, y0 + n, dtype=np.float64)[None, :]
            wts = np.clip(np.minimum((js + 1) * s, ys + 1) - np.maximum(js * s, ys), 0, None) / s
            acc = wts.astype(np.float32) @ rows
            if carry_j == j0:
                acc[0] += carry
            done = j1 - j0 if last else int(np.sum((np.arange(j0, j1) + 1) * s <= y0 + n + 1e-9))
            if done:
                out[j0:j0 + done] = np.clip(acc[:done] + 0.5, 0, 255).astype(
                    np.uint8).reshape(done, ow, 3)
            if done < j1 - j0:
                carry_j, carry = j0 + done, acc[done]
                if done + 1 < j1 - j0:            # cannot happen with s ≥ 1; keep it exact
                    raise ValueError("band resampling lost rows")
            else:
                carry_j, carry = -1, None
        return out

    def orientation(self) -> int:
        if not self.exif:
            return 1
        try:
            ex = Image.Exif()
            ex.load(self.exif)
            return int(ex.get(0x0112, 1))
        except Exception:  # noqa: BLE001 — an unreadable EXIF block just means "upright"
            return 1


def _exif_transposed(image: np.ndarray, orientation: int) -> np.ndarray:
    method = _EXIF_TRANSPOSE.get(orientation)
    if method is None:
        return image
    return np.ascontiguousarray(np.asarray(Image.fromarray(image).transpose(method)))


def _open(fp, name: str, max_side: int | None) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageLoadError(f"{name}: {w}×{h} is too large ({w * h / 1e6:.0f} MP; "
                                     f"the limit is {MAX_PIXELS / 1e6:.0f} MP)")
            if img.format == "PNG" and w * h > _STREAM_MIN_PIXELS:
                png = _PngStream(fp)
                if png.supported:
                    image = png.decode(max_side)
                    return _exif_transposed(image, png.orientation())
                fp.seek(0)
                img = Image.open(fp)
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
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as e:
        raise ImageLoadError(f"{name}: corrupt or truncated image ({e})") from None
    except MemoryError:
        raise ImageLoadError(f"{name}: not enough memory to decode this image") from None


def check_image_file(path) -> Path:
    """`path` when it is a non-empty file this process may open, else ImageLoadError saying what
    it is instead: missing, a folder, unreadable (and why), empty. Cheap: what a command line
    checks before it loads a model."""
    path = Path(path)
    name = str(path)
    if path.is_dir():
        raise ImageLoadError(f"{name}: is a folder, not an image (give a photo file)")
    try:
        size = path.stat().st_size
        if size:
            with open(path, "rb"):
                pass
    except FileNotFoundError:
        raise ImageLoadError(f"{name}: file not found") from None
    except OSError as e:
        raise ImageLoadError(f"{name}: the file cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise ImageLoadError(f"{name}: empty file (0 bytes)")
    return path


def load_image(path, max_side: int | None = DEFAULT_MAX_SIDE) -> np.ndarray:
    """(H, W, 3) uint8 RGB, upright per EXIF; the longer side is at most `max_side` (shrunk while
    decoding, so memory follows the output size); max_side=None loads any size up to MAX_PIXELS."""
    path = check_image_file(path)
    name = str(path)
    try:
        with open(path, "rb") as f:
            return _open(f, name, max_side)
    except OSError as e:
        raise ImageLoadError(f"{name}: the file cannot be read ({e.strerror or e})") from None


def decode_image(data: bytes, name: str = "clipboard",
                 max_side: int | None = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Like load_image for bytes already in memory (clipboard, drag-and-drop, network)."""
    if not data:
        raise ImageLoadError(f"{name}: no image data (0 bytes)")
    return _open(io.BytesIO(bytes(data)), name, max_side)


def save_image(path, image: np.ndarray, quality: int = 95) -> Path:
    """Atomic write (caingan.files.atomic_write); format from the extension; ExportError on failure."""
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
    if not path.parent.is_dir():
        raise ExportError(f"{path}: folder {path.parent} does not exist")
    try:
        atomic_write(path, lambda f: img.save(f, format=fmt, **kw))
    except OSError as e:
        raise ExportError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


__all__ = ["load_image", "check_image_file", "decode_image", "save_image", "MAX_PIXELS", "DEFAULT_MAX_SIDE"]
