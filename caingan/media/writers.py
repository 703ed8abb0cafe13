"""Video files out: H.264 MP4 and palette GIF, frame by frame, through PyAV (FFmpeg's libraries).

* `Mp4Writer`: H.264 (libx264), yuv420p — what every browser, phone and editor plays — in an
  MP4 with the index at the front (faststart). yuv420p needs even sides, so an odd width or
  height is padded by one repeated edge row/column.
* `GifWriter`: one palette shared by every frame (`GifPalette.from_frames`, median cut over a
  sample of the clip) and FFmpeg's GIF encoder, which stores only the rectangle that changed
  and marks unchanged pixels transparent, so a talking head costs a few KB per frame instead of
  a full image each. A pixel within GIF_KEEP_LEVELS of the colour already shown keeps it, so
  video noise does not repaint the still parts (40 frames of a 256² clip: 1.0 → 0.5 MB, mean
  error 2.3 → 2.9 levels). `scale` shrinks the GIF (0.5: half the width and height).
* `write_videos`: both at once from a frame source that can be read twice (the exporter's PNG
  store), with `progress(done, total)` after every frame and `cancel()` checked before each.

Both write under a hidden temp name (caingan.files.AtomicFile) and move into place on
`close()`; `abort()` removes it, so a cancelled, failed or interrupted (Ctrl-C) encode leaves
no broken file, and the KeyboardInterrupt goes on to the caller.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable, Mapping

import av
import numpy as np
from PIL import Image

from caingan.config import MAX_FPS, MIN_FPS, check_fps
from caingan.errors import CainGANError, ExportError
from caingan.files import AtomicFile

GIF_TICKS_PER_SECOND = 100      # GIF delays are in 1/100 s
GIF_MIN_TICKS = 2               # browsers slow shorter delays down to 1/10 s
GIF_COLORS = 255                # + one transparent entry for unchanged pixels
PALETTE_SAMPLES = 16            # frames the shared palette is built from
GIF_KEEP_LEVELS = 8             # a pixel this close (0-255, every channel) to what is shown stays
H264_CRF = "18"                 # visually lossless for faces; ~20 KB/s at 128², 25 fps
H264_PRESET = "fast"


def _rate(fps: float) -> Fraction:
    return Fraction(check_fps(fps)).limit_denominator(1001)


def _even(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return rgb


def _rgb(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ExportError(f"video frames must be (H, W, 3) uint8 RGB, got {a.shape} {a.dtype}")
    return np.ascontiguousarray(a)


class _AvWriter:
    """A PyAV container written into an AtomicFile; subclasses encode frames."""

    fmt = ""

    def __init__(self, path, *, sync: bool = True):
        self.path = Path(path)
        self.count = 0
        self._file = AtomicFile(self.path, sync=sync)
        try:
            # By name, not through the file object: MP4's faststart re-opens the file to move
            # its index to the front.
            self._container = av.open(str(self._file.temp), "w", format=self.fmt,
                                      options=self._muxer_options())
        except BaseException:
            self._file.abort()
            raise
        self._stream = None

    def _muxer_options(self) -> dict:
        return {}

    def _encode(self, frame, duration: int | None = None) -> None:
        for packet in self._stream.encode(frame):
            if duration is not None:
                packet.duration = duration
            self._container.mux(packet)

    def close(self) -> Path | None:
        """Flush the encoder and move the file into place; with no frames nothing is written."""
        if self._file.done:
            return self.path if self.count else None
        try:
            if self.count == 0:
                self.abort()
                return None
            self._encode(None)
            self._container.close()
        except BaseException:
            self.abort()
            raise
        self._file.commit()
        return self.path

    def abort(self) -> None:
        try:
            self._container.close()
        except Exception:  # noqa: BLE001 — already failing; the temp file goes either way
            pass
        self._file.abort()


class Mp4Writer(_AvWriter):
    """H.264 yuv420p MP4 at `fps`; every frame must be `size` (width, height) RGB uint8."""

    fmt = "mp4"

    def __init__(self, path, fps: float, size: tuple[int, int], *, crf: str = H264_CRF,
                 preset: str = H264_PRESET, sync: bool = True):
        rate = _rate(fps)
        super().__init__(path, sync=sync)
        self.size = (int(size[0]), int(size[1]))
        try:
            s = self._container.add_stream("libx264", rate=rate,
                                           options={"crf": str(crf), "preset": preset})
            s.width, s.height = self.size[0] + self.size[0] % 2, self.size[1] + self.size[1] % 2
            s.pix_fmt = "yuv420p"
            self._stream = s
        except BaseException:
            self.abort()
            raise

    def _muxer_options(self) -> dict:
        return {"movflags": "+faststart"}

    def add(self, rgb: np.ndarray) -> None:
        rgb = _rgb(rgb)
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            raise ExportError(f"{self.path}: frame size {rgb.shape[1]}x{rgb.shape[0]} differs "
                              f"from the video's {self.size[0]}x{self.size[1]}")
        self._encode(av.VideoFrame.from_ndarray(_even(rgb), format="rgb24"))
        self.count += 1


class GifPalette:
    """255 colours for every frame of a GIF (index 255 is transparent: 'unchanged pixel')."""

    def __init__(self, colors: np.ndarray):
        colors = np.asarray(colors, np.uint8).reshape(-1, 3)[:GIF_COLORS]
        rgb = np.zeros((GIF_COLORS, 3), np.uint8)
        rgb[:len(colors)] = colors
        rgb[len(colors):] = colors[0]
        self.rgb = rgb
        # The lookup image repeats colour 0 in slot 255, so no pixel maps to the transparent slot.
        self._lookup = Image.new("P", (1, 1))
        self._lookup.putpalette(np.concatenate([rgb, rgb[:1]]).ravel().tolist())
        argb = np.zeros((256, 4), np.uint8)           # PyAV's pal8 palette: A, R, G, B
        argb[:GIF_COLORS, 0] = 255
        argb[:GIF_COLORS, 1:] = rgb
        self.argb = argb

    @classmethod
    def from_frames(cls, frames) -> "GifPalette":
        """Median cut over the given frames (a sample of the clip), stacked into one image."""
        frames = [_rgb(f) for f in frames]
        if not frames:
            raise ValueError("a palette needs at least one frame")
        w = max(f.shape[1] for f in frames)
        sheet = Image.new("RGB", (w, sum(f.shape[0] for f in frames)))
        y = 0
        for f in frames:
            sheet.paste(Image.fromarray(f), (0, y))
            y += f.shape[0]
        q = sheet.quantize(colors=GIF_COLORS, method=Image.Quantize.MEDIANCUT)
        return cls(np.asarray(q.getpalette()[:GIF_COLORS * 3], np.uint8))

    def indices(self, rgb: np.ndarray) -> np.ndarray:
        """Nearest palette index per pixel (no dithering: dither noise defeats frame deltas)."""
        q = Image.fromarray(_rgb(rgb)).quantize(palette=self._lookup, dither=Image.Dither.NONE)
        idx = np.array(q, np.uint8)
        idx[idx == GIF_COLORS] = 0
        return idx


def gif_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    """(width, height) of a GIF of `size` frames at `scale` (at least 1 px each way)."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


class GifWriter(_AvWriter):
    """Looping GIF at `fps` with one shared palette; frames are resized by `scale` (0 < s ≤ 1).

    Frame times are rounded cumulatively to 1/100 s ticks, so a long clip does not drift; above
    50 fps frames that would show for less than 2 ticks are left out (browsers play shorter
    delays at 1/10 s), keeping the GIF in real time.
    """

    fmt = "gif"

    def __init__(self, path, fps: float, palette: GifPalette, size: tuple[int, int],
                 scale: float = 1.0, *, sync: bool = True):
        self.fps = check_fps(fps)
        if not (isinstance(scale, (int, float)) and 0 < scale <= 1):
            raise CainGANError(f"GIF scale must be above 0 and at most 1, got {scale!r}")
        super().__init__(path, sync=sync)
        self.palette, self.size, self.scale = palette, (int(size[0]), int(size[1])), float(scale)
        self.out_size = gif_size(self.size, self.scale)
        self._last_tick: int | None = None
        self._index = 0
        self._shown: np.ndarray | None = None     # what a viewer sees after the last frame
        self._shown_idx: np.ndarray | None = None
        try:
            s = self._container.add_stream("gif", rate=GIF_TICKS_PER_SECOND)
            s.width, s.height = self.out_size
            s.pix_fmt = "pal8"
            s.codec_context.time_base = Fraction(1, GIF_TICKS_PER_SECOND)
            self._stream = s
        except BaseException:
            self.abort()
            raise

    def add(self, rgb: np.ndarray) -> None:
        rgb = _rgb(rgb)
        if (rgb.shape[1], rgb.shape[0]) != self.size:
            raise ExportError(f"{self.path}: frame size {rgb.shape[1]}x{rgb.shape[0]} differs "
                              f"from the GIF's {self.size[0]}x{self.size[1]}")
        tick = round(self._index * GIF_TICKS_PER_SECOND / self.fps)
        self._index += 1
        if self._last_tick is not None and tick < self._last_tick + GIF_MIN_TICKS:
            return
        if self.out_size != self.size:
            rgb = np.asarray(Image.fromarray(rgb).resize(self.out_size, Image.Resampling.LANCZOS))
        idx = self.palette.indices(rgb)
        if self._shown is not None:
            near = np.abs(rgb.astype(np.int16) - self._shown).max(axis=-1) <= GIF_KEEP_LEVELS
            idx = np.where(near, self._shown_idx, idx)
        self._shown_idx, self._shown = idx, self.palette.rgb[idx].astype(np.int16)
        frame = av.VideoFrame.from_ndarray((idx, self.palette.argb), format="pal8")
        frame.pts = tick
        frame.time_base = Fraction(1, GIF_TICKS_PER_SECOND)
        # The muxer takes a frame's delay from the next frame's time, the last one's from this.
        nominal = round(self._index * GIF_TICKS_PER_SECOND / self.fps) - tick
        self._encode(frame, max(GIF_MIN_TICKS, nominal))
        self._last_tick = tick
        self.count += 1


def write_videos(outputs: Mapping[str, Path], read_frame: Callable[[int], np.ndarray], n: int,
                 fps: float, *, gif_scale: float = 1.0,
                 progress: Callable[[int, int], None] | None = None, sync: bool = True,
                 cancel: Callable[[], bool] | None = None) -> bool:
    """Encode frames 0..n-1 (`read_frame(i)` → RGB) into outputs {"mp4": path, "gif": path}.

    One frame is in memory at a time (plus the palette sample for a GIF); progress(done, n)
    after each frame. cancel() → True before a frame stops the encode: every output is aborted
    and False returned. On any error, KeyboardInterrupt included, every output is aborted (no
    file left) and the error raised. True when the videos were written.
    """
    outputs = {k: Path(v) for k, v in outputs.items() if k in ("mp4", "gif")}
    if n <= 0 or not outputs:
        return True
    first = read_frame(0)
    size = (first.shape[1], first.shape[0])
    writers: list[_AvWriter] = []
    try:
        if "mp4" in outputs:
            writers.append(Mp4Writer(outputs["mp4"], fps, size, sync=sync))
        if "gif" in outputs:
            picks = np.unique(np.linspace(0, n - 1, min(n, PALETTE_SAMPLES)).round().astype(int))
            out = gif_size(size, gif_scale)
            sample = [first if i == 0 else read_frame(int(i)) for i in picks]
            if out != size:
                sample = [np.asarray(Image.fromarray(_rgb(f)).resize(out, Image.Resampling.LANCZOS))
                          for f in sample]
            writers.append(GifWriter(outputs["gif"], fps, GifPalette.from_frames(sample), size,
                                     gif_scale, sync=sync))
        for i in range(n):
            if cancel is not None and cancel():
                for w in writers:
                    w.abort()
                return False
            rgb = first if i == 0 else read_frame(i)
            for w in writers:
                w.add(rgb)
            if progress is not None:
                progress(i + 1, n)
        for w in writers:
            w.close()
    except BaseException as e:
        for w in writers:
            w.abort()
        if isinstance(e, av.error.FFmpegError) and not isinstance(e, OSError):
            raise ExportError(f"FFmpeg could not encode {', '.join(p.name for p in outputs.values())}"
                              f": {e}") from e
        raise
    return True


__all__ = ["MIN_FPS", "MAX_FPS", "check_fps", "Mp4Writer", "GifPalette", "GifWriter", "gif_size",
           "write_videos"]
