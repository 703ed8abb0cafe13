"""Evaluation protocol: targets never leak into sources, runs repeat exactly, the report is right."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from train import evaluate as ev

torch.set_num_threads(1)
SIZE = 64


# --- frame selection ------------------------------------------------------------------------
@pytest.mark.parametrize("n", [9, 10, 33, 40, 41, 250, 1499])
@pytest.mark.parametrize("k", [1, 8])
def test_sources_are_never_targets(n, k):
    if n < k + 1:
        pytest.skip("too short for this K")
    for seed in range(5):
        sel = ev.select_frames(n, 32, k, seed, f"clip{n}")
        assert len(sel.sources) == k and len(np.unique(sel.sources)) == k
        assert len(np.unique(sel.targets)) == len(sel.targets) == min(32, n - k)
        assert not set(sel.sources) & set(sel.targets)
        assert sel.targets.min() >= 0 and max(sel.targets.max(), sel.sources.max()) < n


def test_selection_is_seeded_by_clip_name_and_nested_over_k():
    a = ev.select_frames(300, 32, 8, 0, "a.mp4")
    assert np.array_equal(a.sources, ev.select_frames(300, 32, 8, 0, "a.mp4").sources)
    assert not np.array_equal(a.sources, ev.select_frames(300, 32, 8, 0, "b.mp4").sources)
    assert not np.array_equal(a.sources, ev.select_frames(300, 32, 8, 1, "a.mp4").sources)
    # Targets are evenly spaced and independent of the seed: every method sees the same frames.
    assert np.array_equal(a.targets, ev.select_frames(300, 32, 8, 5, "a.mp4").targets)
    assert np.ptp(np.diff(a.targets)) <= 1


def test_too_short_clip_is_skipped_with_a_reason():
    clips = [fake_clip("short", 5), fake_clip("long", 40)]
    data = ev.build_eval_set(clips, 32, 8, 0, progress=False)
    assert data.clip_names == ["long"]
    assert len(data.skipped) == 1 and "short" in data.skipped[0]


# --- a fake world in which every frame says which frame it is -------------------------------
def frame_id_image(i: int) -> np.ndarray:
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    img[..., 0], img[..., 1] = i % 256, i // 256
    return img


def read_frame_id(img: np.ndarray) -> int:
    return int(img[0, 0, 0]) + 256 * int(img[0, 0, 1])


def fake_points(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    pts = rng.uniform(10, SIZE - 10, size=(n, 68, 2)).astype(np.float32)
    pts[:, 36], pts[:, 45] = (16, 30), (48, 30)
    return pts


def fake_clip(name: str, n: int) -> ev.TestClip:
    frames = np.stack([frame_id_image(i) for i in range(n)])
    return ev.TestClip(name, n, lambda: (frames, fake_points(n)))


class RecordingReenactor:
    """Copies a source through and remembers which frames were handed over as sources."""

    def __init__(self):
        self.calls = []

    def set_sources(self, images, points):
        assert len(images) == len(points)
        self.calls.append([read_frame_id(i) for i in images])
        self.first = images[0]

    def generate_batch(self, points, max_batch=16):
        return SimpleNamespace(image=np.repeat(self.first[None], len(points), axis=0))


class FakeScorer:
    def __init__(self, data):
        self.data = data

    def score(self, generated):
        ids = [read_frame_id(g) for g in generated]
        return {"n": len(generated), "ssim": 0.5, "csim": 0.25, "fid": 12.5,
                "landmark_error": 0.125, "faces_missed": 1, "csim_fallbacks": 0,
                "seconds": {}, "ids": ids}


def args_for(tmp_path: Path, **kw) -> SimpleNamespace:
    base = dict(checkpoint=[], cache=str(tmp_path), split="test", k=[1, 8], targets=32,
                max_clips=None, seed=0, device="cpu", batch=8, threads=0, fid_method="lowrank",
                feature_cache=None, landmarks="dlib", figure_rows=2, out=str(tmp_path / "R.md"),
                argv=["--k", "1", "8"])
    base.update(kw)
    return SimpleNamespace(**base)


def test_run_never_feeds_a_target_as_source_and_writes_everything(tmp_path):
    clips = [fake_clip("c1", 30), fake_clip("c2", 300)]
    rec = RecordingReenactor()
    methods = [ev.Method("Copy", rec, SIZE, path="x", sha256="ab" * 32),
               ev.Method("Fixed", RecordingReenactor(), SIZE, arch="pix2pixhd", k_fixed=8)]
    result = ev.run(args_for(tmp_path), methods=methods, scorer_factory=FakeScorer, clips=clips,
                    progress=False)
    data = result["data"]
    assert len(data.target_frames) == 22 + 32  # short clip: 30 − 8 targets
    targets = {name: set(sel.targets) for name, sel in zip(data.clip_names, data.selections)}
    # K=1 then K=8 for each clip; K=1's source is the first of K=8's.
    assert [len(c) for c in rec.calls] == [1, 1, 8, 8]
    for clip, call in zip(["c1", "c2", "c1", "c2"], rec.calls):
        assert not set(call) & targets[clip]
    assert rec.calls[0][0] == rec.calls[2][0] and rec.calls[1][0] == rec.calls[3][0]
    # The truth the scorer sees is the frame the protocol chose.
    assert [read_frame_id(f) for f in data.target_frames] == \
        [int(t) for sel in data.selections for t in sel.targets]
    rows = result["rows"]
    assert [(r["method"], r["k"]) for r in rows] == [("Copy", 1), ("Copy", 8), ("Fixed", 8)]
    report = (tmp_path / "R.md").read_text()
    assert "| Copy | 1 | 0.500 | 0.250 | 12.50 | 0.1250 | 1 / 54 |" in report
    assert "Fixed at K=1 (built for K=8)" in report
    assert "abab" in report and "2 clips, 330 frames" in report
    raw = json.loads((tmp_path / "R.json").read_text())
    assert raw["clips"][0]["sources"] == [int(s) for s in data.selections[0].sources]
    for k in (1, 8):
        fig = tmp_path / f"r_k{k}.png"
        assert fig.is_file()
    import cv2
    grid = cv2.imread(str(tmp_path / "r_k8.png"))
    # 2 rows; 3 sources + landmarks + 2 methods + truth at K=8
    assert grid.shape == (2 * SIZE, 7 * SIZE, 3)


def test_results_table_markdown():
    rows = [
        {"method": "FSHM", "k": 8, "order": 1, "ssim": 0.61234, "csim": 0.9, "fid": 45.678,
         "landmark_error": 0.05, "faces_missed": 3, "n": 576},
        {"method": "CainGAN", "k": 8, "order": 0, "ssim": 0.7, "csim": 0.95, "fid": 30.0,
         "landmark_error": 0.04, "faces_missed": 0, "n": 576},
        {"method": "CainGAN", "k": 1, "order": 0, "ssim": 0.65, "csim": 0.93, "fid": float("nan"),
         "landmark_error": 0.041, "faces_missed": 2, "n": 576},
    ]
    assert ev.results_table(rows) == (
        "| method | K | SSIM ↑ | CSIM ↑ | FID ↓ | landmark error ↓ | faces missed |\n"
        "|---|---:|---:|---:|---:|---:|---:|\n"
        "| CainGAN | 1 | 0.650 | 0.930 | — | 0.0410 | 2 / 576 |\n"
        "| CainGAN | 8 | 0.700 | 0.950 | 30.00 | 0.0400 | 0 / 576 |\n"
        "| FSHM | 8 | 0.612 | 0.900 | 45.68 | 0.0500 | 3 / 576 |")


def test_checkpoint_specs_are_parsed_strictly():
    assert ev.parse_named(["a=x/y.safetensors", "b = z"]) == [("a", "x/y.safetensors"), ("b", "z")]
    for bad in (["nopath"], ["=x"], ["a="], ["a=x", "a=y"]):
        with pytest.raises(ev.CainGANError):
            ev.parse_named(bad)


# --- loading real checkpoints ---------------------------------------------------------------
def save_train_state(run_dir: Path, arch: str, k: int, seed: int = 0) -> torch.nn.Module:
    from caingan.config import ModelConfig
    from train import state as st
    from train.baselines import build_model
    from train.config import TrainConfig

    torch.manual_seed(seed)
    cfg = TrainConfig(arch=arch, k=k, model=ModelConfig.tiny(SIZE), run_dir=str(run_dir))
    module = build_model(arch, cfg.model, k)
    st.save_state(run_dir, 7, {"gen": module}, {}, {"step": 7}, cfg.to_dict())
    return module


@pytest.mark.parametrize("arch,k", [("fshm", 2), ("pix2pixhd", 2), ("caingan", 2)])
def test_training_states_load_and_generate_like_the_module(tmp_path, arch, k):
    from caingan.face.landmark_image import landmark_images

    module = save_train_state(tmp_path / arch, arch, k).eval()
    m = ev.load_method(arch, tmp_path / arch)  # a run directory: its newest state
    assert m.arch == arch and m.step == 7 and len(m.sha256) == 64
    assert m.path.endswith("step_00000007.safetensors")
    assert m.supports(k) and m.supports(1) == (arch != "pix2pixhd")
    frames = np.stack([frame_id_image(i * 40) for i in range(k)])
    pts = fake_points(k + 3)
    m.reenactor.set_sources(list(frames), list(pts[:k]))
    out = m.reenactor.generate_batch(pts[k:]).image
    assert out.shape == (3, SIZE, SIZE, 3) and out.dtype == np.uint8
    src = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(127.5).sub(1)[None].expand(3, -1, -1, -1, -1)
    lms = landmark_images(pts[:k], SIZE)[None].expand(3, -1, -1, -1, -1)
    with torch.no_grad():
        ref, _ = module(src, lms, landmark_images(pts[k:], SIZE))
    ref = ((ref.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_model_file_loads_through_the_reenactor(tmp_path):
    from caingan.nn.checkpoint import save_model
    from caingan.config import ModelConfig
    from caingan.nn.model import CainGAN

    cfg = ModelConfig.tiny(SIZE)
    path = save_model(tmp_path / "m.safetensors", CainGAN(cfg), cfg, {"arch": "caingan", "step": 3})
    m = ev.load_method("CainGAN", path)
    assert (m.arch, m.step, m.image_size, m.k_fixed) == ("caingan", 3, SIZE, None)
    from caingan.files import file_hash
    assert m.sha256 == file_hash(path)
    with pytest.raises(ev.CainGANError, match="not found"):
        ev.load_method("x", tmp_path / "missing.safetensors")


# --- the real metrics on real faces ---------------------------------------------------------
STILLS = Path(__file__).resolve().parents[2] / "shared" / "data" / "stills"


def stills_clip(name: str, detector) -> ev.TestClip:
    import cv2
    paths = [STILLS / name / f"{name}{i}.png" for i in range(1, 6)]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"stills of {name} absent")
    frames = np.stack([cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (128, 128),
                                  interpolation=cv2.INTER_AREA) for p in paths])
    points = np.stack([detector.detect(f).points for f in frames])
    return ev.TestClip(name, len(frames), lambda: (frames, points))


@pytest.mark.slow
def test_scorer_perfect_copy_beats_another_person(tmp_path):
    from train import metrics
    from caingan.face.landmarks import LandmarkDetector
    from caingan.thirdparty import fid_inception_path

    try:
        inception = metrics.InceptionFeatures(fid_inception_path(download=False), batch_size=8)
    except Exception as exc:
        pytest.skip(f"FID Inception weights unavailable: {exc}")
    det = LandmarkDetector("dlib")
    data = ev.build_eval_set([stills_clip("amy", det), stills_clip("raj", det)], 3, 2, 0,
                             progress=False)
    scorer = ev.Scorer(data, inception=inception, detector=det, fid_method="lowrank", progress=False)
    perfect = scorer.score(data.target_frames.copy())
    assert perfect["ssim"] == pytest.approx(1.0) and perfect["csim"] == pytest.approx(1.0)
    assert abs(perfect["fid"]) < 1e-6 and perfect["faces_missed"] == 0
    floor, missed = scorer.detector_floor()
    assert perfect["landmark_error"] == pytest.approx(floor) and missed == 0
    swapped = scorer.score(data.target_frames[::-1].copy())   # amy ↔ raj
    assert swapped["ssim"] < 0.5 < perfect["ssim"]
    assert swapped["csim"] < perfect["csim"] - 0.05
    assert abs(swapped["fid"]) < 1e-6   # FID compares sets: the same frames in another order
    assert swapped["landmark_error"] > floor + 0.02
    blank = scorer.score(np.full_like(data.target_frames, 127))
    assert blank["faces_missed"] == blank["n"] and np.isnan(blank["landmark_error"])
    assert blank["csim_fallbacks"] == blank["n"]
    assert blank["fid"] > 100
