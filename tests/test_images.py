"""Image files a user drops on the editor: every format becomes (H, W, 3) uint8, every failure an
ImageLoadError naming the file; saving is atomic."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from caingan.errors import ExportError, ImageLoadError
from caingan.media.images import decode_image, load_image, save_image


@pytest.fixture(scope="module")
def still_rgb(stills) -> np.ndarray:
    """A real face still as an RGB array with visibly different channels (tinted)."""
    g = np.asarray(Image.open(stills[0]).convert("L"), np.float32)
    rgb = np.stack([g, g * 0.8, g * 0.5], axis=2)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _assert_rgb8(a: np.ndarray, shape: tuple | None = None):
    assert isinstance(a, np.ndarray)
    assert a.dtype == np.uint8
    assert a.ndim == 3 and a.shape[2] == 3
    if shape is not None:
        assert a.shape[:2] == shape


@pytest.mark.parametrize("ext,fmt,tol", [(".jpg", "JPEG", 12.0), (".png", "PNG", 0.0),
                                         (".webp", "WEBP", 12.0)])
def test_common_formats_load_as_rgb(tmp_path, still_rgb, ext, fmt, tol):
    path = tmp_path / f"face{ext}"
    Image.fromarray(still_rgb).save(path, format=fmt, quality=95)
    a = load_image(path)
    _assert_rgb8(a, still_rgb.shape[:2])
    diff = np.abs(a.astype(np.float32) - still_rgb.astype(np.float32)).mean()
    assert diff <= tol, f"{ext}: decoded image differs from the written one by {diff:.2f}"
    # channel order is RGB (the tint makes R > B in the bright face region)
    assert a[..., 0].mean() > a[..., 2].mean() + 10


def test_real_png_still_loads(stills):
    a = load_image(stills[0])
    with Image.open(stills[0]) as im:
        w, h = im.size
    _assert_rgb8(a, (h, w))


def test_exif_orientation_is_honoured(tmp_path, still_rgb):
    wide = np.ascontiguousarray(still_rgb[:100, :])  # 100×150: not square, so a rotation shows
    wide[:10, :10] = (255, 0, 0)                       # red marker top-left of the stored pixels
    img = Image.fromarray(wide)
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90° CW to display
    path = tmp_path / "rotated.jpg"
    img.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    a = load_image(path)
    _assert_rgb8(a, (wide.shape[1], wide.shape[0]))  # (150, 100): height and width swapped
    # Orientation 6: the stored top-left corner ends up top-right when displayed.
    assert a[2:8, -8:-2, 0].mean() > 200 and a[2:8, -8:-2, 2].mean() < 60
    # also when shrinking while decoding (draft/reduce must not drop the orientation)
    b = load_image(path, max_side=50)
    assert b.shape[0] > b.shape[1] and max(b.shape[:2]) <= 50


def test_grayscale_png_becomes_rgb(tmp_path, stills):
    g = np.asarray(Image.open(stills[1]).convert("L"))
    path = tmp_path / "gray.png"
    Image.fromarray(g, "L").save(path)
    a = load_image(path)
    _assert_rgb8(a, g.shape)
    assert np.array_equal(a[..., 0], g) and np.array_equal(a[..., 1], g) and np.array_equal(a[..., 2], g)


def test_rgba_png_is_composited_on_white(tmp_path, still_rgb):
    h, w = still_rgb.shape[:2]
    alpha = np.full((h, w), 255, np.uint8)
    alpha[:, : w // 2] = 0  # left half fully transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([still_rgb, alpha]), "RGBA").save(path)
    a = load_image(path)
    _assert_rgb8(a, (h, w))
    assert (a[:, : w // 2] == 255).all(), "transparent pixels should show as white"
    assert np.array_equal(a[:, w // 2 + 1:], still_rgb[:, w // 2 + 1:])


def test_16bit_png_is_scaled_to_8bit(tmp_path, stills):
    g8 = np.asarray(Image.open(stills[2]).convert("L")).astype(np.uint16)
    g16 = g8 * 257  # full 16-bit range
    path = tmp_path / "deep.png"
    Image.fromarray(g16).save(path)  # mode I;16
    with Image.open(path) as im:
        assert im.mode.startswith("I"), im.mode  # really a 16-bit file
    a = load_image(path)
    _assert_rgb8(a, g8.shape)
    assert np.abs(a[..., 0].astype(int) - g8.astype(int)).max() <= 1


def test_palette_image_loads(tmp_path, still_rgb):
    path = tmp_path / "palette.png"
    Image.fromarray(still_rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    _assert_rgb8(load_image(path), still_rgb.shape[:2])


def test_huge_jpeg_is_shrunk_while_decoding(tmp_path, still_rgb):
    # 8000×6000 from a real face, upscaled cheaply (nearest) and saved at low quality
    big = Image.fromarray(still_rgb).resize((8000, 6000), Image.Resampling.NEAREST)
    path = tmp_path / "huge.jpg"
    big.save(path, format="JPEG", quality=50)
    del big
    a = load_image(path, max_side=1024)
    _assert_rgb8(a)
    assert max(a.shape[:2]) <= 1024 and max(a.shape[:2]) >= 1000
    assert abs(a.shape[1] / a.shape[0] - 8000 / 6000) < 0.01  # aspect ratio kept


def test_max_side_keeps_small_images_unchanged(tmp_path, still_rgb):
    path = tmp_path / "small.png"
    Image.fromarray(still_rgb).save(path)
    a = load_image(path, max_side=1024)
    assert np.array_equal(a, still_rgb)


def test_tiny_image_loads(tmp_path, still_rgb):
    path = tmp_path / "tiny.png"
    Image.fromarray(still_rgb).resize((8, 8)).save(path)
    _assert_rgb8(load_image(path), (8, 8))


def test_decode_image_from_bytes(stills):
    data = stills[0].read_bytes()
    a = decode_image(data)
    assert np.array_equal(a, load_image(stills[0]))


# --- memory: a huge PNG must not cost tens of bytes per pixel -----------------------------------
def _write_big_png(path, w, h, alpha=True, block=64):
    """A w×h 8-bit RGB(A) PNG written band by band (never whole in memory): colour blocks
    (R 0/200 by column block, G 0/150 by row block), B 90, a transparent left quarter."""
    import struct
    import zlib

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    c = 4 if alpha else 3
    x = np.arange(w)
    comp = zlib.compressobj(1)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8,
                                                                       6 if alpha else 2, 0, 0, 0)))
        for y0 in range(0, h, 128):
            n = min(128, h - y0)
            rows = np.zeros((n, 1 + w * c), np.uint8)
            px = rows[:, 1:].reshape(n, w, c)
            px[..., 0] = (x // block % 2 * 200)[None]
            px[..., 1] = (np.arange(y0, y0 + n) // block % 2 * 150)[:, None]
            px[..., 2] = 90
            if alpha:
                px[..., 3] = np.where(x < w // 4, 0, 255)[None]
            f.write(chunk(b"IDAT", comp.compress(rows.tobytes())))
        f.write(chunk(b"IDAT", comp.flush()) + chunk(b"IEND", b""))
    return path


_PEAK_SCRIPT = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))   # a regression fails, not swaps
import cv2, numpy   # loaded by every caller anyway: not the decoder's memory
from caingan.media import images
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kw = json.loads(sys.argv[2])
try:
    a = images.load_image(sys.argv[1], **kw)
    shape, corner = list(a.shape), a[:4, :4].reshape(-1, 3).mean(0).tolist()
    block = a[a.shape[0] // 2 - 2:a.shape[0] // 2 + 2, -4:].reshape(-1, 3).mean(0).tolist()
except Exception as e:
    shape, corner, block = str(e), None, None
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"shape": shape, "delta": (peak - base) * 1024, "corner": corner,
                  "block": block}))
"""


def _peak(path, **kw):
    """Load in a fresh interpreter: (result shape or error, peak RSS growth in bytes, pixels)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    repo = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(path), json.dumps(kw)],
                       capture_output=True, text=True, cwd=repo, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_huge_png_shrinks_while_decoding_in_bounded_memory(tmp_path):
    # 36 MP RGBA (2 MB on disk): decoding it whole took ~60 bytes per pixel (2.1 GB)
    path = _write_big_png(tmp_path / "big.png", 6000, 6000, block=5)
    out = _peak(path, max_side=600)
    assert out["shape"] == [600, 600, 3], out
    budget = 10 * 600 * 600 + path.stat().st_size + 40e6   # + one band of rows
    assert out["delta"] <= budget, f"peak RSS grew {out['delta'] / 1e6:.0f} MB"
    # transparent quarter on the left composited on white; 5-px blocks averaged, not aliased
    assert out["corner"] == [255.0, 255.0, 255.0], out
    assert all(abs(v - e) <= 2 for v, e in zip(out["block"], (100, 75, 90))), out


@pytest.mark.slow   # writes and decodes an 81 MP PNG: ~10-20 s
def test_load_image_bounds_size_and_memory_by_default(tmp_path):
    from caingan.media.images import DEFAULT_MAX_SIDE
    side = DEFAULT_MAX_SIDE + 808           # 81 MP: 4.9 GB at 60 bytes per pixel
    path = _write_big_png(tmp_path / "poster.png", side, side, alpha=True)
    out = _peak(path)                       # what the exporter and the app call
    assert out["shape"] == [DEFAULT_MAX_SIDE, DEFAULT_MAX_SIDE, 3], out
    assert out["delta"] <= 10 * DEFAULT_MAX_SIDE ** 2 + path.stat().st_size, \
        f"peak RSS grew {out['delta'] / 1e6:.0f} MB for a {DEFAULT_MAX_SIDE}² result"


@pytest.mark.slow
def test_streamed_png_matches_pillow(tmp_path, still_rgb):
    """Big PNGs decode band by band; every filter type, palette and alpha must come out exact."""
    import cv2
    big = cv2.resize(still_rgb, (1203, 1101), interpolation=cv2.INTER_CUBIC)
    alpha = np.tile(np.arange(1203, dtype=np.uint8)[None], (1101, 1))
    for mode, arr in (("RGB", big), ("RGBA", np.dstack([big, alpha]))):
        img = Image.fromarray(arr, mode)
        for name, im in ((mode, img), (mode + "-P", img.convert("RGB").quantize(64))):
            path = tmp_path / f"{name}.png"
            im.save(path, compress_level=1)
            ref = np.asarray(im.convert("RGBA"), np.uint16)
            ref = ((ref[..., :3] * ref[..., 3:] + 255 * (255 - ref[..., 3:]) + 127) // 255)
            got = load_image(path)
            assert np.array_equal(got, ref.astype(np.uint8)), name
            small = load_image(path, max_side=300)
            want = cv2.resize(ref.astype(np.uint8), (300, 275), interpolation=cv2.INTER_AREA)
            assert small.shape == (275, 300, 3)
            assert np.abs(small.astype(int) - want).max() <= 1, name


def test_streamed_png_honours_exif_orientation(tmp_path, still_rgb):
    import cv2
    big = cv2.resize(still_rgb, (1500, 1000))
    big[:40, :40] = (255, 0, 0)
    img = Image.fromarray(big)
    exif = img.getexif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.png"
    img.save(path, exif=exif.tobytes())
    a = load_image(path)
    assert a.shape == (1500, 1000, 3)
    assert a[5:30, -30:-5, 0].mean() > 200 and a[5:30, -30:-5, 2].mean() < 60


def test_truncated_big_png_is_rejected(tmp_path):
    path = _write_big_png(tmp_path / "whole.png", 1500, 1500)
    data = path.read_bytes()
    cut = tmp_path / "cut-big.png"
    cut.write_bytes(data[: len(data) * 2 // 3])
    _expect_error(cut, "truncated")


# --- failures: always ImageLoadError, always naming the file ------------------------------------
def _expect_error(path, *words):
    with pytest.raises(ImageLoadError) as ei:
        load_image(path)
    msg = str(ei.value)
    assert path.name in msg, msg
    for w in words:
        assert w in msg.lower(), msg
    return msg


def test_random_bytes_are_rejected(tmp_path):
    path = tmp_path / "noise.png"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    _expect_error(path)


def test_text_file_renamed_jpg_is_rejected(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n" * 20)
    _expect_error(path, "not an image")


def test_truncated_jpeg_is_rejected(tmp_path, still_rgb):
    full = io.BytesIO()
    Image.fromarray(still_rgb).save(full, format="JPEG", quality=95)
    data = full.getvalue()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    _expect_error(path, "truncated")


def test_truncated_png_still_is_rejected(tmp_path, stills):
    data = stills[0].read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    _expect_error(path)


def test_empty_file_is_rejected(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _expect_error(path, "empty")


def test_missing_file_is_rejected(tmp_path):
    _expect_error(tmp_path / "nowhere.jpg", "not found")


def test_folder_is_rejected(tmp_path):
    folder = tmp_path / "photos.jpg"
    folder.mkdir()
    _expect_error(folder, "folder")


def test_decode_empty_bytes_is_rejected():
    with pytest.raises(ImageLoadError, match="clipboard"):
        decode_image(b"")


def test_errors_are_caingan_errors(tmp_path):
    from caingan.errors import CainGANError
    assert issubclass(ImageLoadError, CainGANError)
    with pytest.raises(CainGANError):
        load_image(tmp_path / "nothing.png")


# --- saving ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp"])
def test_save_image_round_trip_leaves_no_temp_file(tmp_path, still_rgb, ext):
    path = tmp_path / f"out{ext}"
    assert save_image(path, still_rgb) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], "a temp file was left behind"
    back = load_image(path)
    assert back.shape == still_rgb.shape
    assert np.abs(back.astype(np.float32) - still_rgb).mean() < 8


def test_save_image_replaces_existing_file(tmp_path, still_rgb):
    path = tmp_path / "out.png"
    save_image(path, np.zeros_like(still_rgb))
    save_image(path, still_rgb)
    assert np.array_equal(load_image(path), still_rgb)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_save_image_refuses_bad_extension(tmp_path, still_rgb):
    path = tmp_path / "out.xyz"
    with pytest.raises(ExportError, match="xyz"):
        save_image(path, still_rgb)
    assert not any(tmp_path.iterdir()), "nothing must be written for a refused extension"


def test_save_image_into_missing_folder_is_export_error(tmp_path, still_rgb):
    with pytest.raises(ExportError, match="does not exist"):
        save_image(tmp_path / "no" / "such" / "out.png", still_rgb)


def test_save_image_failure_keeps_old_file_and_no_temp(tmp_path, still_rgb, monkeypatch):
    path = tmp_path / "out.png"
    save_image(path, still_rgb)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(ExportError, match="No space left"):
        save_image(path, np.zeros_like(still_rgb))
    assert path.read_bytes() == before, "a failed save must not damage the existing file"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"], "a temp file was left behind"


def test_export_says_a_folder_given_as_a_photo_is_a_folder(tmp_path, stills, capsys):
    """caingan-export --source FOLDER said 'file not found'; it names the folder for what it is,
    before any model is loaded (so at once)."""
    import time

    from caingan.pipeline.export_cli import build_parser, cli_main

    build_parser()                  # its imports (torch) are not what is timed
    folder = tmp_path / "photos"
    folder.mkdir()
    t0 = time.perf_counter()
    for source, expect in ((folder, f"{folder}: is a folder, not an image"),
                           (tmp_path / "gone.jpg", f"{tmp_path / 'gone.jpg'}: file not found")):
        rc = cli_main(["--source", str(stills[0]), "--source", str(source), "--landmarks",
                       str(tmp_path / "never-read.json"), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and err == [f"caingan-export: error: {expect} (give a photo file)"
                                   if source == folder else f"caingan-export: error: {expect}"]
    assert time.perf_counter() - t0 < 5 and not (tmp_path / "out").exists()
