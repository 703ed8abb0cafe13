"""The evaluation's outputs: the markdown report, its tables, the results JSON and the figures."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from caingan.files import atomic_write

from .protocol import PROTOCOLS, EvalSet

REPO = Path(__file__).resolve().parents[2]
METRIC_KEYS = ("ssim", "csim", "csim_torch", "fid", "landmark_error", "faces_missed")
TABLE_HEADER = ("| protocol | method | K | SSIM ↑ | CSIM ↑ | CSIM (landmarks) ↑ | FID ↓ | "
                "landmark error ↓ | faces missed |\n"
                "|---|---|---:|---:|---:|---:|---:|---:|---:|")


def _fmt(v, digits: int) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _row_order(r: dict[str, Any]) -> tuple:
    p = r.get("protocol", PROTOCOLS[0])
    return (PROTOCOLS.index(p) if p in PROTOCOLS else len(PROTOCOLS), r["k"], r.get("order", 0))


def results_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table in the layout of the paper's Tables 1–2: by protocol, then K, then method
    (default model marked ★, baselines in italics)."""
    lines = [TABLE_HEADER]
    for r in sorted(rows, key=_row_order):
        name = r["method"] + (" ★" if r.get("default") else "")
        if r.get("baseline"):
            name = f"*{name}*"
        lines.append(f"| {r.get('protocol', PROTOCOLS[0])} | {name} | {r['k']} | {_fmt(r['ssim'], 3)} | "
                     f"{_fmt(r['csim'], 3)} | {_fmt(r.get('csim_torch'), 3)} | {_fmt(r['fid'], 2)} | "
                     f"{_fmt(r['landmark_error'], 4)} | {r['faces_missed']} / {r['n']} |")
    return "\n".join(lines)


def _clean(v):
    """JSON without NaN/inf (null instead) and with numpy scalars as numbers."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    return v


def results_json(rows: Sequence[dict[str, Any]], methods: Sequence, ctx: dict[str, Any],
                 sets: Sequence[EvalSet]) -> str:
    """One row per (method, protocol, K): the metrics plus default / personalized / baseline."""
    out_rows = []
    for r in sorted(rows, key=_row_order):
        row = {"method": r["method"], "protocol": r["protocol"], "k": r["k"]}
        row.update({k: r.get(k) for k in METRIC_KEYS})
        row.update({"default": bool(r.get("default")), "personalized": bool(r.get("personalized")),
                    "baseline": bool(r.get("baseline"))})
        row.update({k: r[k] for k in ("n", "csim_fallbacks", "seconds", "reused") if k in r})
        out_rows.append(row)
    doc = {
        "rows": out_rows,
        "context": ctx,
        "methods": [{"name": m.name, "arch": m.arch, "path": m.path, "sha256": m.sha256,
                     "step": m.step, "k_fixed": m.k_fixed, "note": m.note,
                     "image_size": m.image_size, "output_size": m.output_size,
                     "baseline": m.baseline, "personalized": m.personalized,
                     "config": m.config} for m in methods],
        "clips": {s.protocol: s.clips_json() for s in sets},
    }
    return json.dumps(_clean(doc), indent=1, allow_nan=False)


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


def _size(m) -> str:
    if m.image_size is None:
        return "evaluation size"
    out = m.output_size or m.image_size
    return f"{m.image_size}²" + (f" → {out}²" if out != m.image_size else "")


def _net_text(net) -> str:
    if net == "torch":
        return (" (dlib's detector, shape predictor and aligned chip; the network run by its torch "
                "port, caingan.nn.face_id, which agrees with dlib's to ~3e-4 in CSIM)")
    return " (dlib's own network)" if net == "dlib" else ""


def render_report(rows: Sequence[dict[str, Any]], methods: Sequence, ctx: dict[str, Any]) -> str:
    from .metrics import SSIM_SETTINGS

    s = ctx["image_size"]
    out = [
        "# Results: self-reenactment on the held-out test split",
        "",
        "Protocol of the paper (after Zakharov et al. 2019), rows **same-clip**: for each test clip, "
        f"{ctx['targets_per_clip']} target frames evenly spaced over the clip (fewer in clips "
        f"shorter than {ctx['targets_per_clip'] + ctx['reserve']} frames, which keep "
        f"{ctx['reserve']} frames out of the targets) are rendered from their landmarks, given K "
        "source frames of the same clip: the first K of one fixed random order of the clip's "
        "non-target frames, seeded by the clip's name only. So K=1 uses the first of the K=8 "
        "sources and no row depends on which other K, methods or clips were evaluated. The test "
        "split holds identity groups never seen in training.",
        "",
        "Harder rows, **cross-clip**: in the test identity groups with two or more clips "
        f"({ctx.get('cross_groups', 0)} groups, {ctx.get('cross_clips', 0)} clips), each clip's "
        "targets (the same frames as above) are rendered from the sources of the group's next clip "
        "(names sorted, cyclic): the same person in another background, light and expression range.",
        "",
        f"Everything is scored at {s}² px, the data's resolution: a method that renders at another "
        "size is resized to it (INTER_AREA down, INTER_CUBIC up), as a user would see it. "
        "★ marks the app's default model; baselines are in italics.",
        "",
        results_table(rows),
        "",
        "## Setup",
        "",
        f"- Command: `{ctx['command']}`",
        f"- Date: {ctx['date']}; code: {ctx['commit']}",
        f"- Hardware: {ctx['hardware']}",
        f"- Data: `{ctx['cache']}` split `{ctx['split']}`: {ctx['n_clips']} clips, "
        f"{ctx['total_frames']} frames; {ctx['n_targets']} same-clip and "
        f"{ctx.get('n_cross_targets', 0)} cross-clip target frames at {s}² px; seed {ctx['seed']}",
    ]
    if ctx.get("skipped"):
        out.append(f"- Clips skipped (too short): {len(ctx['skipped'])} — " + "; ".join(ctx["skipped"]))
    out += ["", "| name | arch | size | checkpoint | step | SHA-256 |", "|---|---|---|---|---:|---|"]
    for m in methods:
        arch = m.arch + (f" ({m.note})" if m.note else "") + (f", K={m.k_fixed} only" if m.k_fixed else "")
        out.append(f"| {m.name} | {arch} | {_size(m)} | {f'`{m.path}`' if m.path else '—'} | "
                   f"{m.step if m.step is not None else '—'} | {f'`{m.sha256}`' if m.sha256 else '—'} |")
    floor = ctx.get("detector_floor")
    fallbacks = ", ".join(f"{r['method']} {r.get('protocol', '')} K={r['k']}: {r['csim_fallbacks']}"
                          for r in sorted(rows, key=_row_order) if "csim_fallbacks" in r)
    n = ctx["n_targets"]
    csim_torch = ("not computed: " + ctx["csim_torch_note"]) if ctx.get("csim_torch_note") else (
        "the same 128-D descriptor (face-api's TF.js port of dlib's ResNet, run in torch, "
        "caingan.nn.face_id), on dlib's aligned chip placed by the known target landmarks in both "
        "the generated and the real frame: no detector, so a face dlib cannot find is still scored")
    out += [
        "",
        "## Metrics",
        "",
        "- **SSIM** (Wang et al. settings as skimage's `structural_similarity` with "
        + ", ".join(f"{k}={v}" for k, v in SSIM_SETTINGS.items())
        + "; computed with OpenCV, equal to skimage's to 1e-12), mean over target frames.",
        "- **CSIM**: cosine similarity of dlib's 128-D ResNet face descriptors of generated vs real "
        f"frame{_net_text(ctx.get('csim_net'))}. The paper used a different face-recognition network, so only our rows compare with "
        "each other; dlib's cosines are compressed (different people ≈ 0.84, same person ≈ 0.95 on "
        "the project's stills). dlib's detector upsamples images under 200 px once. When it finds "
        "no face in a generated frame, the descriptor is taken in a box around the target "
        f"landmarks ({fallbacks or 'no rows'}).",
        f"- **CSIM (landmarks)**: {csim_torch}.",
        f"- **FID**: TF Inception (2015-12-05) pool features, 299² TF-bilinear resize, x/128 − 1; "
        f"each row's generated frames vs the same real target frames ({n} same-clip), Fréchet "
        f"distance by `{ctx['fid_method']}`. With fewer images than 2048 features FID is biased "
        "upwards (more so for the smaller cross-clip set); compare rows of one protocol, not with "
        "the paper's numbers.",
        "- **Landmark error**: 68 points detected on the generated frame "
        f"({ctx.get('detector') or 'caingan.face.landmarks.LandmarkDetector'}) vs the target points, "
        "mean distance / outer-eye-corner distance (points 36–45), over frames where a face was "
        "found; **faces missed** counts the frames where none was, per row (never silently dropped).",
    ]
    if floor is not None:
        out.append(f"- Detector floor: the same landmark error measured on the real target frames "
                   f"is {_fmt(floor[0], 4)} ({floor[1]} missed): differences below it are noise.")
    reused = sorted({f"{r['method']} ({r.get('protocol', PROTOCOLS[0])}, K={r['k']})"
                     for r in rows if r.get("reused")})
    if reused:
        out.append(f"- Scores copied from `{ctx.get('reuse')}` (same weights, config and drawn frames; "
                   f"`--reuse`): " + "; ".join(reused) + ".")
    if ctx.get("not_applicable"):
        out.append("- Not evaluated: " + "; ".join(ctx["not_applicable"]) + ".")
    if ctx.get("figures"):
        out += ["", "## Samples", ""]
        for protocol, k, fig, names in ctx["figures"]:
            out += [f"{protocol}, K={k}: sources | target landmarks | " + " | ".join(names)
                    + " | truth", "", f"![{protocol} K={k}]({fig})", ""]
    out.append("")
    out.append(f"Timing: {ctx['elapsed_min']:.1f} min in all; raw numbers in `{ctx['json_name']}`.")
    return "\n".join(out) + "\n"


def figure_rows(data: EvalSet, n: int = 4) -> list[int]:
    """The middle target of the first n entries: same frames for every method and K."""
    rows = []
    for c in range(len(data.clip_names)):
        idx = np.flatnonzero(data.clip_index == c)
        rows.append(int(idx[len(idx) // 2]))
        if len(rows) == n:
            break
    return rows


def figure_grid(data: EvalSet, k: int, generated: dict[str, np.ndarray], rows: Sequence[int],
                max_sources: int = 3) -> np.ndarray:
    """One row per chosen target: its entry's sources | target landmarks | each method | truth.
    `generated[name]` holds that method's frames for `rows`, in order."""
    from caingan.face.landmark_image import draw_landmarks

    s = data.image_size
    out = []
    for j, i in enumerate(rows):
        c = int(data.clip_index[i])
        tiles = [data.source_frames[c][m] for m in range(min(k, max_sources))]
        tiles += [np.zeros((s, s, 3), np.uint8)] * (min(max_sources, max(k, 1)) - len(tiles))
        tiles.append(draw_landmarks(data.target_points[i], s))
        tiles += [g[j] for g in generated.values()]
        tiles.append(data.target_frames[i])
        out.append(np.concatenate(tiles, axis=1))
    return np.concatenate(out, axis=0)


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, payload)


