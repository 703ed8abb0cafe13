"""Self-reenactment evaluation as in the paper (protocol of Zakharov et al. 2019).

For every clip of the test split (identity groups never seen in training) a fixed set of target
frames is rendered from its landmarks, given K source frames of the same clip that are never
among the targets. Targets and sources depend only on (seed, clip name), so runs, methods and
values of K see exactly the same frames; K=1 uses the first of the K=8 sources. The generated
frames are scored against the real ones with SSIM, CSIM, FID and landmark error (train.metrics)
and written as the paper's Tables 1–2, with a figure of the same test frames across methods.

    python -m train.evaluate --cache ~/.cache/caingan/data/s128 \\
        --checkpoint CainGAN=runs/small/model_latest.safetensors \\
        --checkpoint pix2pixHD=runs/pix2pixhd --checkpoint FSHM=runs/fshm --k 1 8

A checkpoint is a model file (caingan.nn.checkpoint.save_model), a training-state file
(runs/X/checkpoints/step_*.safetensors: the baselines only have those) or a run directory
(its newest training state, so every method is taken at the end of its training budget).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from caingan.errors import CainGANError
from caingan.files import atomic_write, file_hash
from caingan.face.landmark_file import rescale_points

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "RESULTS.md"


# ---------------------------------------------------------------------------------------------
# Test clips and the frame protocol
# ---------------------------------------------------------------------------------------------
@dataclass
class TestClip:
    name: str                      # stable key (seeds the source draw)
    n_frames: int
    load: Callable[[], tuple[np.ndarray, np.ndarray]]  # → frames (N,S,S,3) uint8, points (N,68,2)
    group: str = ""


@dataclass
class Selection:
    targets: np.ndarray            # (T,) frame indices
    sources: np.ndarray            # (k_max,) frame indices, disjoint from targets; K uses [:K]


def select_frames(n_frames: int, n_targets: int, k_max: int, seed: int, key: str) -> Selection:
    """Evenly spaced targets over the whole clip, then K sources drawn from the other frames.

    Evenly spaced targets cover every pose the clip goes through; the source draw is seeded by
    (seed, clip name) so adding or dropping other clips never changes this clip's frames. When
    the clip is short, targets shrink so that k_max sources still remain.
    """
    if k_max < 1 or n_targets < 1:
        raise ValueError("k_max and n_targets must be ≥ 1")
    if n_frames < k_max + 1:
        raise ValueError(f"clip {key!r} has {n_frames} frames, fewer than K={k_max} sources + 1 target")
    t = min(n_targets, n_frames - k_max)
    targets = np.round(np.linspace(0, n_frames - 1, t)).astype(np.int64)
    assert len(np.unique(targets)) == t  # spacing ≥ 1 frame keeps rounded indices distinct
    rest = np.setdiff1d(np.arange(n_frames), targets)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    sources = rng.choice(rest, size=k_max, replace=False)
    return Selection(targets=targets, sources=sources.astype(np.int64))


@dataclass
class EvalSet:
    """Everything the protocol needs from the data, already cut down to the chosen frames."""
    clip_names: list[str]
    clip_index: np.ndarray         # (N,) which clip each target belongs to
    target_frames: np.ndarray      # (N,S,S,3) uint8
    target_points: np.ndarray      # (N,68,2) float32
    source_frames: list[np.ndarray]  # per clip (k_max,S,S,3)
    source_points: list[np.ndarray]  # per clip (k_max,68,2)
    selections: list[Selection]
    total_frames: int              # frames in the evaluated clips (for the report)
    skipped: list[str] = field(default_factory=list)

    @property
    def image_size(self) -> int:
        return int(self.target_frames.shape[1])


def _resize_to(frames: np.ndarray, points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Crops and their points at another size (pixel centres map as (x+.5)·s/w − .5)."""
    import cv2

    h = frames.shape[1]
    if h == size:
        return frames, points
    interp = cv2.INTER_AREA if h > size else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])
    return out, rescale_points(points, h, size)


def build_eval_set(clips: Sequence[TestClip], n_targets: int, k_max: int, seed: int,
                   image_size: int | None = None, progress: bool = True) -> EvalSet:
    names, index, tf, tp, sf, sp, sels, skipped = [], [], [], [], [], [], [], []
    total = 0
    it = clips
    if progress:
        from tqdm import tqdm
        it = tqdm(clips, desc="test clips", unit="clip", leave=False)
    for clip in it:
        try:
            sel = select_frames(clip.n_frames, n_targets, k_max, seed, clip.name)
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        frames, points = clip.load()
        if len(frames) != clip.n_frames or len(points) != clip.n_frames:
            raise CainGANError(f"clip {clip.name}: index says {clip.n_frames} frames, file holds "
                               f"{len(frames)} frames / {len(points)} point sets")
        picked = np.concatenate([sel.targets, sel.sources])
        f, p = frames[picked], np.asarray(points, dtype=np.float32)[picked]
        if image_size is not None:
            f, p = _resize_to(f, p, image_size)
        t = len(sel.targets)
        names.append(clip.name)
        index.append(np.full(t, len(names) - 1))
        tf.append(f[:t]); tp.append(p[:t]); sf.append(f[t:]); sp.append(p[t:])
        sels.append(sel)
        total += clip.n_frames
    if not names:
        raise CainGANError("no test clip is long enough for the protocol: " + "; ".join(skipped[:3]))
    return EvalSet(names, np.concatenate(index), np.concatenate(tf), np.concatenate(tp), sf, sp,
                   sels, total, skipped)


def list_test_clips(cache: str | Path, split: str = "test", max_clips: int | None = None
                    ) -> list[TestClip]:
    """The split's clips in the data cache written by train.prepare, in a stable order."""
    from .dataset import ClipDataset

    ds = ClipDataset(str(cache), split=split, k=1)
    clips = []
    for rec in ds.clips:
        path = Path(rec["cache_path"]) if "cache_path" in rec else Path(cache) / rec["file"]
        name = str(rec.get("path") or rec.get("name") or path.stem)

        def load(path=path):
            with np.load(path) as z:
                return z["frames"], z["points"]

        clips.append(TestClip(name=name, n_frames=int(rec["frames"]), load=load,
                              group=str(rec.get("identity_group", ""))))
    clips.sort(key=lambda c: c.name)
    if max_clips:
        clips = clips[:max_clips]
    if not clips:
        raise CainGANError(f"no '{split}' clips in the data cache {cache}")
    return clips


# ---------------------------------------------------------------------------------------------
# Methods: anything with set_sources(images, points) and generate_batch(points).image
# ---------------------------------------------------------------------------------------------
class ModuleReenactor:
    """The Reenactor API over any generator with CainGAN's forward (the baselines)."""

    def __init__(self, module, image_size: int, device: str = "cpu", k_fixed: int | None = None):
        import torch

        self.device = torch.device(device)
        self.module = module.eval().to(self.device)
        self.image_size = image_size
        self.k_fixed = k_fixed
        self._src = self._lms = None

    def set_sources(self, images: Sequence[np.ndarray], points: Sequence[np.ndarray]) -> None:
        import torch
        from caingan.face.landmark_image import landmark_images

        images = np.stack([np.asarray(i) for i in images])
        if images.dtype != np.uint8 or images.shape[1:] != (self.image_size, self.image_size, 3):
            raise CainGANError(f"sources must be uint8 ({self.image_size},{self.image_size},3) crops, "
                               f"got {images.dtype} {images.shape[1:]}")
        if self.k_fixed is not None and len(images) != self.k_fixed:
            raise CainGANError(f"this model was built for K={self.k_fixed} sources, got {len(images)}")
        src = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        self._src = src.unsqueeze(0).to(self.device)
        self._lms = landmark_images(np.stack(points), self.image_size).unsqueeze(0).to(self.device)

    def generate_batch(self, points: np.ndarray, max_batch: int = 16):
        import torch
        from caingan.face.landmark_image import landmark_images

        if self._src is None:
            raise CainGANError("no sources set: call set_sources() before generating")
        out = []
        with torch.inference_mode():
            for i in range(0, len(points), max_batch):
                tl = landmark_images(points[i:i + max_batch], self.image_size).to(self.device)
                b, k = tl.shape[0], self._src.shape[1]
                img, _ = self.module(self._src.expand(b, k, *self._src.shape[2:]),
                                     self._lms.expand(b, k, *self._lms.shape[2:]), tl)
                img = ((img.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
                out.append(img.permute(0, 2, 3, 1).cpu().numpy())
        return _Generated(np.concatenate(out))


@dataclass
class _Generated:
    image: np.ndarray


@dataclass
class Method:
    name: str
    reenactor: Any
    image_size: int
    arch: str = "caingan"
    k_fixed: int | None = None     # pix2pixHD: its input width fixes K
    path: str = ""
    sha256: str = ""
    step: int | None = None
    note: str = ""

    def supports(self, k: int) -> bool:
        return self.k_fixed is None or self.k_fixed == k


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory → its newest complete training state; files are returned as given."""
    from caingan.nn.checkpoint import checkpoint_paths

    p = Path(path).expanduser()
    if p.is_dir():
        from .state import list_checkpoints
        found = list_checkpoints(p)
        if not found:
            raise CainGANError(f"{p}: run directory without complete checkpoints/step_*.safetensors")
        return found[-1][1]
    st_path, _ = checkpoint_paths(p)
    if not st_path.is_file():
        raise CainGANError(f"{p}: checkpoint not found")
    return st_path


def load_method(name: str, path: str | Path, device: str = "cpu") -> Method:
    """A named model from a model file, a training state or a run directory."""
    from caingan.nn.checkpoint import MODEL_KIND, load_checkpoint, load_module_state, read_meta

    from . import state as st
    from .baselines import build_model
    from .config import TrainConfig

    st_path = resolve_checkpoint(path)
    meta = read_meta(st_path)
    digest = file_hash(st_path)
    if meta.get("kind") == MODEL_KIND:
        from caingan.pipeline.inference import Reenactor
        r = Reenactor.from_checkpoint(st_path, device=device, precision="fp32")
        extra = meta.get("extra") or {}
        return Method(name, r, r.image_size, arch=str(extra.get("arch", "caingan")),
                      path=str(st_path), sha256=digest, step=extra.get("step"))
    if meta.get("kind") != st.KIND:
        raise CainGANError(f"{st_path}: a {meta.get('kind')!r} checkpoint is neither a model "
                           f"({MODEL_KIND!r}) nor a training state ({st.KIND!r})")
    cfg = TrainConfig.from_dict(meta["config"])
    module = build_model(cfg.arch, cfg.model, cfg.k)
    tensors, _ = load_checkpoint(st_path, kind=st.KIND)
    load_module_state(module, tensors, st_path, prefix="gen.")
    step = (meta.get("counters") or {}).get("step")
    note = ",".join(cfg.ablations)
    if cfg.arch == "caingan":
        from caingan.pipeline.inference import Reenactor
        r = Reenactor(module, device=device, precision="fp32")
        return Method(name, r, cfg.model.image_size, arch="caingan", path=str(st_path),
                      sha256=digest, step=step, note=note)
    k_fixed = cfg.k if cfg.arch == "pix2pixhd" else None
    r = ModuleReenactor(module, cfg.model.image_size, device=str(_device(device)), k_fixed=k_fixed)
    return Method(name, r, cfg.model.image_size, arch=cfg.arch, k_fixed=k_fixed, path=str(st_path),
                  sha256=digest, step=step, note=note)


def _device(name: str):
    from caingan.device import pick_device
    return pick_device(name)


def generate(method: Method, data: EvalSet, k: int, batch: int = 16) -> np.ndarray:
    """Every target of every clip from that clip's first k sources → (N,S,S,3) uint8."""
    out = []
    for c in range(len(data.clip_names)):
        method.reenactor.set_sources(list(data.source_frames[c][:k]), list(data.source_points[c][:k]))
        pts = data.target_points[data.clip_index == c]
        img = method.reenactor.generate_batch(pts, max_batch=batch).image
        if img.shape != (len(pts), data.image_size, data.image_size, 3) or img.dtype != np.uint8:
            raise CainGANError(f"{method.name}: generate_batch returned {img.dtype} {img.shape}")
        out.append(img)
    return np.concatenate(out)


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------
class Scorer:
    """The four metrics against one fixed set of real target frames (computed once for those)."""

    def __init__(self, data: EvalSet, inception=None, descriptor=None, detector=None,
                 fid_method: str = "sqrtm", progress: bool = True):
        from train import metrics

        self.m = metrics
        self.data = data
        self.inception = inception or metrics.InceptionFeatures()
        self.descriptor = descriptor or metrics.FaceDescriptor()
        self._detector = detector
        self.fid_method = fid_method
        self.progress = progress
        self._real_feats = None
        self._real_desc = None

    @property
    def detector(self):
        if self._detector is None:
            from caingan.face.landmarks import LandmarkDetector
            self._detector = LandmarkDetector()
        return self._detector

    def _bar(self, it, desc):
        if not self.progress:
            return it
        from tqdm import tqdm
        return tqdm(it, desc=desc, unit="img", leave=False)

    def real_features(self) -> np.ndarray:
        if self._real_feats is None:
            self._real_feats = self.inception(self.data.target_frames)
        return self._real_feats

    def real_descriptors(self) -> np.ndarray:
        if self._real_desc is None:
            d = self.data
            self._real_desc = np.stack([self.descriptor(d.target_frames[i], d.target_points[i])
                                        for i in self._bar(range(len(d.target_frames)), "csim (real)")])
        return self._real_desc

    def detector_floor(self) -> tuple[float, int]:
        """Landmark error of the real frames themselves: what 'perfect' scores with this detector."""
        errs, missed = self.m.landmark_errors(self._bar(self.data.target_frames, "landmarks (real)"),
                                              self.data.target_points, self.detector)
        return float(np.nanmean(errs)) if np.isfinite(errs).any() else float("nan"), missed

    def score(self, generated: np.ndarray) -> dict[str, Any]:
        d = self.data
        if generated.shape != d.target_frames.shape:
            raise ValueError(f"generated {generated.shape} vs targets {d.target_frames.shape}")
        t0 = time.perf_counter()
        ssim = self.m.ssim_batch(generated, d.target_frames)
        real_desc = self.real_descriptors()
        csim, fallbacks = [], 0
        for i in self._bar(range(len(generated)), "csim"):
            desc = self.descriptor(generated[i], d.target_points[i])
            fallbacks += int(self.descriptor.last_fallback)
            csim.append(self.m.cosine_similarity(desc, real_desc[i]))
        t1 = time.perf_counter()
        feats = self.inception(generated)
        t2 = time.perf_counter()
        fid = self.m.fid_from_features(feats, self.real_features(), method=self.fid_method)
        t3 = time.perf_counter()
        lmk, missed = self.m.landmark_errors(self._bar(generated, "landmarks"), d.target_points,
                                             self.detector)
        t4 = time.perf_counter()
        return {
            "n": int(len(generated)),
            "ssim": float(np.mean(ssim)),
            "csim": float(np.mean(csim)),
            "fid": float(fid),
            "landmark_error": float(np.nanmean(lmk)) if np.isfinite(lmk).any() else float("nan"),
            "faces_missed": int(missed),
            "csim_fallbacks": int(fallbacks),
            "seconds": {"ssim_csim": t1 - t0, "inception": t2 - t1, "frechet": t3 - t2,
                        "landmarks": t4 - t3},
        }


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
TABLE_HEADER = ("| method | K | SSIM ↑ | CSIM ↑ | FID ↓ | landmark error ↓ | faces missed |\n"
                "|---|---:|---:|---:|---:|---:|---:|")


def _fmt(v: float, digits: int) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def results_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table in the layout of the paper's Tables 1–2, rows grouped by K."""
    lines = [TABLE_HEADER]
    for r in sorted(rows, key=lambda r: (r["k"], r.get("order", 0))):
        lines.append(f"| {r['method']} | {r['k']} | {_fmt(r['ssim'], 3)} | {_fmt(r['csim'], 3)} | "
                     f"{_fmt(r['fid'], 2)} | {_fmt(r['landmark_error'], 4)} | "
                     f"{r['faces_missed']} / {r['n']} |")
    return "\n".join(lines)


def hardware() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
             f"({torch.get_num_threads()} threads)"]
    if torch.cuda.is_available():
        parts.append("GPU " + torch.cuda.get_device_name(0))
    return "; ".join(parts)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
        if out.returncode == 0:
            return out.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def render_report(rows: Sequence[dict[str, Any]], methods: Sequence[Method], ctx: dict[str, Any]) -> str:
    from train.metrics import SSIM_SETTINGS

    n_targets = ctx["n_targets"]
    out = [
        "# Results: self-reenactment on the held-out test split",
        "",
        "Protocol of the paper (after Zakharov et al. 2019): for each test clip, "
        f"{ctx['targets_per_clip']} target frames evenly spaced over the clip are rendered from "
        "their landmarks, given K source frames of the same clip drawn (seeded by clip name) from "
        "the frames that are not targets; K=1 uses the first of the K=8 sources. The test split "
        "holds identity groups never seen in training.",
        "",
        results_table(rows),
        "",
        "## Setup",
        "",
        f"- Command: `{ctx['command']}`",
        f"- Date: {ctx['date']}; code: {ctx['commit']}",
        f"- Hardware: {ctx['hardware']}",
        f"- Data: `{ctx['cache']}` split `{ctx['split']}`: {ctx['n_clips']} clips, "
        f"{ctx['total_frames']} frames; {n_targets} target frames in all, at "
        f"{ctx['image_size']}² px; seed {ctx['seed']}",
    ]
    if ctx.get("skipped"):
        out.append(f"- Clips skipped (too short): {len(ctx['skipped'])} — " + "; ".join(ctx["skipped"]))
    out += ["", "| name | arch | checkpoint | step | SHA-256 |", "|---|---|---|---:|---|"]
    for m in methods:
        arch = m.arch + (f" ({m.note})" if m.note else "") + (f", K={m.k_fixed} only" if m.k_fixed else "")
        out.append(f"| {m.name} | {arch} | `{m.path}` | {m.step if m.step is not None else '—'} | "
                   f"`{m.sha256}` |")
    floor = ctx.get("detector_floor")
    fallbacks = ", ".join(f"{r['method']} K={r['k']}: {r['csim_fallbacks']}" for r in rows)
    out += [
        "",
        "## Metrics",
        "",
        "- **SSIM** (skimage `structural_similarity`, Wang et al. settings: "
        + ", ".join(f"{k}={v}" for k, v in SSIM_SETTINGS.items())
        + "), mean over target frames.",
        "- **CSIM**: cosine similarity of dlib's 128-D ResNet face descriptors of generated vs real "
        "frame. The paper used a different face-recognition network, so only our rows compare with "
        "each other; dlib's cosines are compressed (different people ≈ 0.84, same person ≈ 0.95 on "
        "the project's stills). When dlib's detector finds no face in a generated frame, the "
        "descriptor is taken in a box around the target landmarks "
        f"({fallbacks or 'no rows'}).",
        f"- **FID**: TF Inception (2015-12-05) pool features, 299² TF-bilinear resize, x/128 − 1; "
        f"all {n_targets} generated vs all {n_targets} real target frames, Fréchet distance by "
        f"`{ctx['fid_method']}`. With fewer images than 2048 features FID is biased upwards; "
        "compare rows, not with the paper's numbers.",
        "- **Landmark error**: 68 points detected on the generated frame "
        f"({ctx.get('detector', 'caingan.face.landmarks.LandmarkDetector')}) vs the target points, mean "
        "distance / outer-eye-corner distance (points 36–45), over frames where a face was found; "
        "**faces missed** counts the frames where none was, per method (never silently dropped).",
    ]
    if floor is not None:
        out.append(f"- Detector floor: the same landmark error measured on the real target frames "
                   f"is {_fmt(floor[0], 4)} ({floor[1]} missed): differences below it are noise.")
    if ctx.get("not_applicable"):
        out.append("- Not evaluated: " + "; ".join(ctx["not_applicable"]) + ".")
    if ctx.get("figures"):
        out += ["", "## Samples", ""]
        for k, fig in ctx["figures"]:
            out += [f"K={k}: sources | target landmarks | " + " | ".join(m.name for m in methods
                                                                         if m.supports(k))
                    + " | truth", "", f"![K={k}]({fig})", ""]
    out.append("")
    out.append(f"Timing: {ctx['elapsed_min']:.1f} min in all; raw numbers in `{ctx['json_name']}`.")
    return "\n".join(out) + "\n"


def figure_grid(data: EvalSet, k: int, generated: dict[str, np.ndarray], rows: Sequence[int],
                max_sources: int = 3) -> np.ndarray:
    """One row per chosen target: its clip's sources | target landmarks | each method | truth."""
    from caingan.face.landmark_image import draw_landmarks

    s = data.image_size
    out = []
    for i in rows:
        c = int(data.clip_index[i])
        tiles = [data.source_frames[c][j] for j in range(min(k, max_sources))]
        tiles += [np.zeros((s, s, 3), np.uint8)] * (min(max_sources, max(k, 1)) - len(tiles))
        tiles.append(draw_landmarks(data.target_points[i], s))
        tiles += [g[i] for g in generated.values()]
        tiles.append(data.target_frames[i])
        out.append(np.concatenate(tiles, axis=1))
    return np.concatenate(out, axis=0)


def figure_rows(data: EvalSet, n: int = 4) -> list[int]:
    """The middle target of the first n clips: same frames for every method and K."""
    rows = []
    for c in range(len(data.clip_names)):
        idx = np.flatnonzero(data.clip_index == c)
        rows.append(int(idx[len(idx) // 2]))
        if len(rows) == n:
            break
    return rows


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, payload)


def save_png(path: Path, image: np.ndarray) -> None:
    import cv2
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise CainGANError(f"could not encode {path}")
    _atomic_write_bytes(path, buf.tobytes())


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH",
                   help="a model to evaluate (repeatable): model file, training state or run dir")
    p.add_argument("--cache", default=None,
                   help="data cache written by train.prepare (default $CAINGAN_CACHE/data)")
    p.add_argument("--split", default="test")
    p.add_argument("--k", type=int, nargs="+", default=[1, 8], help="numbers of source frames")
    p.add_argument("--targets", type=int, default=32, help="target frames per clip")
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda | mps (generation and FID)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--fid-method", choices=["sqrtm", "lowrank"], default="sqrtm",
                   help="sqrtm: the reference computation (~20 s per FID on a CPU core); "
                        "lowrank: exact SVD shortcut, milliseconds")
    p.add_argument("--feature-cache", default=None,
                   help="folder for cached Inception features (default <caingan cache>/fid-features)")
    p.add_argument("--landmarks", default="auto", help="LandmarkDetector backend: auto | dlib | fa")
    p.add_argument("--figure-rows", type=int, default=4)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="markdown report (figures and JSON beside it)")
    return p.parse_args(argv)


def parse_named(specs: Sequence[str]) -> list[tuple[str, str]]:
    out, seen = [], set()
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise CainGANError(f"--checkpoint wants NAME=PATH, got {spec!r}")
        if name in seen:
            raise CainGANError(f"--checkpoint name {name!r} given twice")
        seen.add(name)
        out.append((name.strip(), path.strip()))
    return out


def run(args: argparse.Namespace, methods: Sequence[Method] | None = None, scorer_factory=None,
        clips: Sequence[TestClip] | None = None, progress: bool = True) -> dict[str, Any]:
    """The whole evaluation; `methods`/`scorer_factory`/`clips` let tests inject fakes."""
    import torch

    from caingan.thirdparty import cache_dir

    start = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    ks = sorted(set(args.k))
    if min(ks) < 1:
        raise CainGANError("--k values must be ≥ 1")
    cache = args.cache or str(cache_dir() / "data")
    if methods is None:
        methods = [load_method(n, p, args.device) for n, p in parse_named(args.checkpoint)]
    sizes = {m.image_size for m in methods}
    if len(sizes) != 1:
        raise CainGANError("the models work at different image sizes: "
                           + ", ".join(f"{m.name} {m.image_size}²" for m in methods))
    if clips is None:
        clips = list_test_clips(cache, args.split, args.max_clips)
    data = build_eval_set(clips, args.targets, max(ks), args.seed, image_size=sizes.pop(),
                          progress=progress)
    if scorer_factory is None:
        from train import metrics
        from caingan.face.landmarks import LandmarkDetector
        feat_dir = args.feature_cache or str(cache_dir() / "fid-features")
        scorer = Scorer(data,
                        inception=metrics.InceptionFeatures(device=str(_device(args.device)),
                                                            batch_size=args.batch,
                                                            cache_dir=feat_dir, progress=progress),
                        detector=LandmarkDetector(args.landmarks),
                        fid_method=args.fid_method, progress=progress)
    else:
        scorer = scorer_factory(data)

    rows, not_applicable, figures, generated_by_k = [], [], [], {}
    for order, m in enumerate(methods):
        for k in ks:
            if not m.supports(k):
                not_applicable.append(f"{m.name} at K={k} (built for K={m.k_fixed})")
                continue
            t0 = time.perf_counter()
            gen = generate(m, data, k, args.batch)
            gen_s = time.perf_counter() - t0
            res = scorer.score(gen)
            res["seconds"]["generate"] = gen_s
            rows.append({"method": m.name, "k": k, "order": order, **res})
            rows_for_fig = figure_rows(data, args.figure_rows)
            generated_by_k.setdefault(k, {})[m.name] = gen[rows_for_fig]
            print(f"{m.name} K={k}: SSIM {res['ssim']:.3f} CSIM {res['csim']:.3f} FID {res['fid']:.2f} "
                  f"LE {res['landmark_error']:.4f} missed {res['faces_missed']}/{res['n']} "
                  f"({gen_s:.0f} s generation)", flush=True)

    out = Path(args.out)
    fig_rows = figure_rows(data, args.figure_rows)
    for k, gens in generated_by_k.items():
        sub = EvalSet(data.clip_names, data.clip_index[fig_rows], data.target_frames[fig_rows],
                      data.target_points[fig_rows], data.source_frames, data.source_points,
                      data.selections, data.total_frames)
        grid = figure_grid(sub, k, gens, list(range(len(fig_rows))))
        fig = out.with_name(f"{out.stem.lower()}_k{k}.png")
        save_png(fig, grid)
        figures.append((k, fig.name))

    floor = scorer.detector_floor() if hasattr(scorer, "detector_floor") else None
    detector = getattr(getattr(scorer, "_detector", None), "backend", None)
    ctx = {
        "command": "python -m train.evaluate " + " ".join(shlex.quote(a) for a in (args.argv or [])),
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "commit": git_commit(), "hardware": hardware(), "cache": cache, "split": args.split,
        "n_clips": len(data.clip_names), "total_frames": data.total_frames,
        "n_targets": int(len(data.target_frames)), "targets_per_clip": args.targets,
        "image_size": data.image_size, "seed": args.seed, "skipped": data.skipped,
        "fid_method": args.fid_method, "detector_floor": floor,
        "detector": f"caingan.face.landmarks.LandmarkDetector, backend {detector}" if detector else None,
        "not_applicable": not_applicable, "figures": figures,
        "json_name": out.with_suffix(".json").name, "elapsed_min": (time.time() - start) / 60,
    }
    report = render_report(rows, methods, ctx)
    _atomic_write_bytes(out, report.encode("utf-8"))
    raw = {"rows": rows, "context": {k: v for k, v in ctx.items()},
           "methods": [{"name": m.name, "arch": m.arch, "path": m.path, "sha256": m.sha256,
                        "step": m.step, "k_fixed": m.k_fixed, "note": m.note} for m in methods],
           "clips": [{"name": n, "targets": s.targets.tolist(), "sources": s.sources.tolist()}
                     for n, s in zip(data.clip_names, data.selections)]}
    _atomic_write_bytes(out.with_suffix(".json"), json.dumps(raw, indent=1, default=float).encode())
    return {"rows": rows, "report": report, "data": data, "figures": figures}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.argv = argv
    try:
        run(args)
    except (CainGANError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
