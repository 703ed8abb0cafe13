"""Evaluation protocol: targets never leak into sources, a row never depends on the other rows,
cross-clip sources come from the same person's other clip, methods are scored at the evaluation
size, the report and the JSON are right."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from caingan.errors import CainGANError
from caingan.face.landmark_file import rescale_points
from caingan.files import file_hash
from train.evaluation import methods as em
from train.evaluation import protocol as ep
from train.evaluation import report as er
from testdata import still
from train.evaluation import run as ev

torch.set_num_threads(1)
SIZE = 64


# --- frame selection ------------------------------------------------------------------------
@pytest.mark.parametrize("n", [9, 10, 33, 40, 41, 250, 1499])
@pytest.mark.parametrize("reserve", [1, 8])
def test_sources_are_never_targets(n, reserve):
    for seed in range(5):
        sel = ep.select_frames(n, 32, seed, f"clip{n}", reserve)
        assert len(np.unique(sel.targets)) == len(sel.targets) == min(32, n - reserve)
        # every other frame is a candidate source, each once, none a target
        assert sorted(sel.sources.tolist() + sel.targets.tolist()) == list(range(n))
        assert len(sel.sources) >= reserve


def test_selection_is_seeded_by_clip_name_only():
    a = ep.select_frames(300, 32, 0, "a.mp4")
    assert np.array_equal(a.sources, ep.select_frames(300, 32, 0, "a.mp4").sources)
    assert not np.array_equal(a.sources[:8], ep.select_frames(300, 32, 0, "b.mp4").sources[:8])
    assert not np.array_equal(a.sources[:8], ep.select_frames(300, 32, 1, "a.mp4").sources[:8])
    # Targets are evenly spaced and independent of the seed: every method sees the same frames.
    assert np.array_equal(a.targets, ep.select_frames(300, 32, 5, "a.mp4").targets)
    assert np.ptp(np.diff(a.targets)) <= 1


def test_too_short_clip_is_skipped_with_a_reason():
    clips = [fake_clip("short", 5), fake_clip("long", 40)]
    data = ep.build_eval_set(clips, 32, 8, 0, progress=False)
    assert data.clip_names == ["long"]
    assert len(data.skipped) == 1 and "short" in data.skipped[0]


def test_k_beyond_the_reserve_is_refused():
    with pytest.raises(CainGANError, match="--reserve"):
        ep.build_eval_set([fake_clip("c", 20)], 32, 16, 0, progress=False, reserve=8)


# --- a fake world in which every frame says which clip and frame it is ----------------------
def frame_id_image(i: int, clip: int = 0) -> np.ndarray:
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = i % 256, i // 256, clip
    return img


def read_frame_id(img: np.ndarray) -> int:
    return int(img[0, 0, 0]) + 256 * int(img[0, 0, 1])


def read_clip_id(img: np.ndarray) -> int:
    return int(img[0, 0, 2])


def fake_points(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng([n, seed])
    pts = rng.uniform(10, SIZE - 10, size=(n, 68, 2)).astype(np.float32)
    pts[:, 36], pts[:, 45] = (16, 30), (48, 30)
    return pts


def fake_clip(name: str, n: int, group: str = "", clip_id: int = 0) -> ep.TestClip:
    frames = np.stack([frame_id_image(i, clip_id) for i in range(n)])
    pts = fake_points(n, clip_id)
    return ep.TestClip(name, n, lambda: (frames, pts), group=group)


class RecordingReenactor:
    """Copies its first source through and remembers which frames were handed over as sources."""

    def __init__(self):
        self.calls = []

    def set_sources(self, images, points):
        assert len(images) == len(points)
        self.calls.append([(read_clip_id(i), read_frame_id(i)) for i in images])
        self.first = images[0]

    def generate_batch(self, points, max_batch=16):
        return SimpleNamespace(image=np.repeat(self.first[None], len(points), axis=0))


class FakeScorer:
    def __init__(self, data):
        self.data = data

    def score(self, generated):
        return {"n": len(generated), "ssim": 0.5, "csim": 0.25, "csim_torch": 0.75, "fid": 12.5,
                "landmark_error": 0.125, "faces_missed": 1, "csim_fallbacks": 0, "seconds": {}}


def args_for(tmp_path: Path, **kw) -> SimpleNamespace:
    base = dict(checkpoint=[], baseline=[], default=None, cache=str(tmp_path), split="test",
                protocol=list(ep.PROTOCOLS), k=[1, 8], targets=32, reserve=8, max_clips=None,
                seed=0, eval_size=None, device="cpu", batch=8, threads=0, fid_method="lowrank",
                no_csim_torch=True, feature_cache=None, landmarks="dlib", figure_rows=2,
                out=str(tmp_path / "R.md"), argv=["--k", "1", "8"])
    base.update(kw)
    return SimpleNamespace(**base)


def test_rows_do_not_depend_on_which_other_k_are_requested(tmp_path):
    """The old draw (rng.choice of k_max frames; targets shrunk by k_max) gave K=1 other sources
    and other targets with --k 1 than with --k 1 8."""
    clips = [fake_clip("c1", 30), fake_clip("c2", 300)]
    seen = {}
    for ks in ([1], [1, 8], [1, 8, 4]):
        rec = RecordingReenactor()
        res = ev.run(args_for(tmp_path, k=ks, protocol=["same-clip"]),
                     methods=[em.Method("Copy", rec, SIZE)], scorer_factory=FakeScorer,
                     clips=clips, progress=False)
        data = res["data"]
        seen[tuple(ks)] = (rec.calls, [t.tolist() for t in data.target_indices])
    calls1, targets1 = seen[(1,)]
    for ks in ((1, 8), (1, 8, 4)):
        calls, targets = seen[ks]
        assert targets == targets1
        assert calls[:2] == calls1                      # K=1 rows: the same sources
    k8 = seen[(1, 8)][0][2:]
    assert seen[(1, 8, 4)][0][4:] == k8                 # K=8 rows too
    k4 = seen[(1, 8, 4)][0][2:4]
    for c in range(2):                                  # K sources: nested prefixes
        assert k8[c][:1] == calls1[c] and k4[c] == k8[c][:4] and len(set(k8[c])) == 8


class CountingScorer(FakeScorer):
    calls = 0

    def score(self, generated):
        CountingScorer.calls += 1
        return {**super().score(generated), "ssim": 0.1 * CountingScorer.calls}


@pytest.mark.slow
def test_reuse_copies_only_rows_of_unchanged_files_on_the_same_frames(tmp_path):
    clips = [fake_clip("c1", 30), fake_clip("c2", 300)]
    first = tmp_path / "first" / "R.md"
    first.parent.mkdir()

    def methods(sha):
        return [em.Method("Model", RecordingReenactor(), SIZE, path="m", sha256=sha),
                em.baseline_method("affine")]

    CountingScorer.calls = 0
    run = lambda out, ms, **kw: ev.run(args_for(tmp_path, protocol=["same-clip"], out=str(out), **kw),  # noqa: E731
                                      methods=ms, scorer_factory=CountingScorer, clips=clips,
                                      progress=False)
    old = {(r["method"], r["k"]): r["ssim"] for r in run(first, methods("aa" * 32))["rows"]}
    assert CountingScorer.calls == 4
    # The model's file changed: only the baseline's rows are copied.
    res = run(tmp_path / "R2.md", methods("bb" * 32), reuse=str(first.with_suffix(".json")))
    assert CountingScorer.calls == 6
    rows = {(r["method"], r["k"]): r for r in res["rows"]}
    for k in (1, 8):
        assert rows[("piecewise-affine warp", k)]["ssim"] == old[("piecewise-affine warp", k)]
        assert rows[("piecewise-affine warp", k)].get("reused") and not rows[("Model", k)].get("reused")
        assert rows[("Model", k)]["ssim"] != old[("Model", k)]
    assert "Scores copied from" in res["report"]
    # Same weights, another network config (e.g. a field changed in the JSON sidecar): measured.
    changed = methods("aa" * 32)
    changed[0].config = {"warp_field": "affine"}
    res = run(tmp_path / "R5.md", changed, reuse=str(first.with_suffix(".json")))
    assert CountingScorer.calls == 8
    assert not any(r.get("reused") for r in res["rows"] if r["method"] == "Model")
    # Other frames drawn (another seed): nothing is copied.
    run(tmp_path / "R3.md", methods("aa" * 32), reuse=str(first.with_suffix(".json")), seed=1)
    assert CountingScorer.calls == 12
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(CainGANError, match="--reuse"):
        run(tmp_path / "R4.md", methods("aa" * 32), reuse=str(bad))


def test_run_never_feeds_a_target_as_source_and_writes_everything(tmp_path):
    clips = [fake_clip("c1", 30, "g1", 1), fake_clip("c2", 300, "g2", 2),
             fake_clip("c3", 50, "g1", 3)]
    rec = RecordingReenactor()
    methods = [em.Method("Copy", rec, SIZE, path="x", sha256="ab" * 32),
               em.Method("Fixed", RecordingReenactor(), SIZE, arch="pix2pixhd", k_fixed=8),
               em.baseline_method("affine")]
    result = ev.run(args_for(tmp_path, default="Copy"), methods=methods, scorer_factory=FakeScorer,
                    clips=clips, progress=False)
    same, cross = result["sets"]
    assert len(same.target_frames) == 22 + 32 + 32  # short clip: 30 − 8 targets
    targets = {name: set(t) for name, t in zip(same.clip_names, same.target_indices)}
    clip_of = {1: "c1", 2: "c2", 3: "c3"}
    # same-clip K=1, K=8 then cross-clip K=1, K=8 (c1 ← c3, c3 ← c1: group g1 only)
    assert [len(c) for c in rec.calls] == [1, 1, 1, 8, 8, 8, 1, 1, 8, 8]
    for call in rec.calls[:6]:
        assert len({cid for cid, _ in call}) == 1
    for clip, call in zip(["c1", "c2", "c3"] * 2, rec.calls[:6]):
        assert all(clip_of[cid] == clip and f not in targets[clip] for cid, f in call)
    assert [{clip_of[c] for c, _ in call} for call in rec.calls[6:]] == [{"c3"}, {"c1"}] * 2
    assert cross.clip_names == ["c1", "c3"] and cross.source_clips == ["c3", "c1"]
    # The truth the scorer sees is the frame the protocol chose, in both protocols.
    assert [(read_clip_id(f), read_frame_id(f)) for f in same.target_frames] == \
        [(int(n[1]), int(t)) for n, ts in zip(same.clip_names, same.target_indices) for t in ts]
    assert np.array_equal(cross.target_frames,
                          np.concatenate([same.target_frames[same.clip_index == c] for c in (0, 2)]))
    rows = result["rows"]
    assert [(r["method"], r["protocol"], r["k"]) for r in rows] == [
        ("Copy", "same-clip", 1), ("piecewise-affine warp", "same-clip", 1),
        ("Copy", "same-clip", 8), ("Fixed", "same-clip", 8), ("piecewise-affine warp", "same-clip", 8),
        ("Copy", "cross-clip", 1), ("piecewise-affine warp", "cross-clip", 1),
        ("Copy", "cross-clip", 8), ("Fixed", "cross-clip", 8),
        ("piecewise-affine warp", "cross-clip", 8)]
    report = (tmp_path / "R.md").read_text()
    assert "| same-clip | Copy ★ | 1 | 0.500 | 0.250 | 0.750 | 12.50 | 0.1250 | 1 / 86 |" in report
    assert "| cross-clip | *piecewise-affine warp* | 8 | 0.500 |" in report
    assert "Fixed at K=1 (built for K=8)" in report
    assert "abab" in report and "3 clips, 380 frames" in report
    assert "(1 groups, 2 clips)" in report
    raw = json.loads((tmp_path / "R.json").read_text())
    assert raw["clips"]["same-clip"][0]["sources"] == [int(s) for s in same.source_indices[0]]
    assert raw["clips"]["cross-clip"][0]["source_clip"] == "c3"
    jrows = {(r["method"], r["protocol"], r["k"]): r for r in raw["rows"]}
    assert len(jrows) == 10
    assert jrows[("Copy", "same-clip", 1)]["default"] is True
    assert jrows[("Copy", "cross-clip", 8)]["baseline"] is False
    aff = jrows[("piecewise-affine warp", "cross-clip", 1)]
    assert (aff["default"], aff["baseline"], aff["personalized"]) == (False, True, False)
    assert {"ssim", "csim", "csim_torch", "fid", "landmark_error", "faces_missed"} <= set(aff)
    for name in ("r_k1.png", "r_k8.png", "r_cross_k1.png", "r_cross_k8.png"):
        assert (tmp_path / name).is_file()
    grid = cv2.imread(str(tmp_path / "r_k8.png"))
    # 2 rows; 3 sources + landmarks + 3 methods + truth at K=8
    assert grid.shape == (2 * SIZE, 8 * SIZE, 3)


def test_cross_clip_pairs_only_groups_with_two_clips():
    names = ["a", "b", "c", "d", "e", "f"]
    groups = ["g1", "g2", "g1", "g3", "g1", "g2"]
    assert ep.cross_clip_pairs(names, groups) == [(0, 2), (1, 5), (2, 4), (4, 0), (5, 1)]
    assert ep.cross_clip_pairs(["a", "b"], ["g1", "g2"]) == []


def test_cross_clip_is_reported_absent_without_multi_clip_groups(tmp_path):
    clips = [fake_clip("c1", 40, "g1"), fake_clip("c2", 40, "g2")]
    res = ev.run(args_for(tmp_path), methods=[em.Method("M", RecordingReenactor(), SIZE)],
                 scorer_factory=FakeScorer, clips=clips, progress=False)
    assert {r["protocol"] for r in res["rows"]} == {"same-clip"}
    assert "no test identity group has two clips" in res["report"]


class SizedReenactor:
    """Takes points at image_size, returns output_size² images; records what it was given."""

    def __init__(self, image_size, output_size):
        self.image_size, self.output_size = image_size, output_size
        self.points, self.source_shapes = [], []

    def set_sources(self, images, points):
        self.source_shapes.append(images[0].shape)

    def generate_batch(self, points, max_batch=16):
        self.points.append(np.asarray(points))
        return SimpleNamespace(image=np.stack([pattern(self.output_size)] * len(points)))


def pattern(size: int) -> np.ndarray:
    y, x = np.mgrid[:size, :size]
    img = np.stack([x * 255 // size, y * 255 // size, (x * y) % 256], -1)
    return img.astype(np.uint8)


@pytest.mark.parametrize("image_size,output_size,interp", [(32, 48, cv2.INTER_CUBIC),
                                                           (32, 128, cv2.INTER_AREA),
                                                           (64, 64, None)])
def test_methods_are_scored_at_the_evaluation_size(image_size, output_size, interp):
    data = ep.build_eval_set([fake_clip("c", 40)], 4, 2, 0, progress=False)
    r = SizedReenactor(image_size, output_size)
    m = em.Method("M", r, image_size)
    out = em.generate(m, data, 2)
    assert out.shape == (4, SIZE, SIZE, 3) and m.output_size == output_size
    assert r.source_shapes == [(SIZE, SIZE, 3)]            # sources at the evaluation size
    np.testing.assert_allclose(r.points[0], rescale_points(data.target_points, SIZE, image_size))
    want = pattern(output_size) if interp is None else cv2.resize(pattern(output_size), (SIZE, SIZE),
                                                                  interpolation=interp)
    assert np.array_equal(out[0], want)


def test_baselines_run_at_the_evaluation_size_and_copy_returns_sources():
    data = ep.build_eval_set([fake_clip("c", 60, clip_id=5)], 8, 8, 0, progress=False)
    for k in (1, 8):
        out = em.generate(em.baseline_method("copy"), data, k)
        ids = {read_frame_id(o) for o in out}
        assert ids <= set(data.source_indices[0][:k].tolist())
        if k == 1:
            assert ids == {int(data.source_indices[0][0])}


# --- method specs ---------------------------------------------------------------------------
def test_method_specs_are_parsed_strictly():
    assert em.parse_named(["a=x/y.safetensors", "b = z"]) == [("a", "x/y.safetensors"), ("b", "z")]
    for bad in (["nopath"], ["=x"], ["a="], ["a=x", "a=y"]):
        with pytest.raises(CainGANError):
            em.parse_named(bad)
    assert em.method_specs(["paper=m.safetensors", "c=baseline:copy"], ["affine"]) == [
        ("paper", "m.safetensors"), ("c", "baseline:copy"),
        ("piecewise-affine warp", "baseline:affine")]
    with pytest.raises(CainGANError, match="twice"):
        em.method_specs([], ["copy", "copy"])
    with pytest.raises(CainGANError, match="nothing to evaluate"):
        em.method_specs([], [])
    m = em.load_method("affine warp", "baseline:affine")
    assert m.baseline and m.image_size is None and m.flags("affine warp") == {
        "default": True, "personalized": False, "baseline": True}
    assert m.flags("other")["default"] is False
    with pytest.raises(CainGANError, match="must contain 'affine'"):
        em.load_method("warp", "baseline:affine")
    with pytest.raises(CainGANError, match="unknown baseline"):
        em.load_method("x", "baseline:tps")


def test_cli_parses_baselines_and_default_and_refuses_an_unknown_default(tmp_path):
    args = ev.parse_args(["--baseline", "copy", "--baseline", "affine", "--checkpoint",
                          "paper=baseline:copy", "--default", "nope", "--k", "1"])
    assert args.baseline == ["copy", "affine"] and args.protocol == list(ep.PROTOCOLS)
    args.out = str(tmp_path / "R.md")
    with pytest.raises(CainGANError, match="--default 'nope'"):
        ev.run(args, clips=[fake_clip("c", 40)], scorer_factory=FakeScorer, progress=False)


def test_results_table_markdown():
    rows = [
        {"method": "FSHM", "protocol": "same-clip", "k": 8, "order": 1, "ssim": 0.61234, "csim": 0.9,
         "csim_torch": 0.8, "fid": 45.678, "landmark_error": 0.05, "faces_missed": 3, "n": 576},
        {"method": "CainGAN", "protocol": "cross-clip", "k": 1, "order": 0, "ssim": 0.5, "csim": 0.9,
         "csim_torch": float("nan"), "fid": 60.0, "landmark_error": 0.06, "faces_missed": 9, "n": 320,
         "default": True},
        {"method": "CainGAN", "protocol": "same-clip", "k": 8, "order": 0, "ssim": 0.7, "csim": 0.95,
         "csim_torch": 0.9, "fid": 30.0, "landmark_error": 0.04, "faces_missed": 0, "n": 576,
         "default": True},
        {"method": "copy source", "protocol": "same-clip", "k": 1, "order": 2, "ssim": 0.65,
         "csim": 0.93, "csim_torch": 0.91, "fid": float("nan"), "landmark_error": 0.041,
         "faces_missed": 2, "n": 576, "baseline": True},
    ]
    assert er.results_table(rows) == (
        "| protocol | method | K | SSIM ↑ | CSIM ↑ | CSIM (landmarks) ↑ | FID ↓ | landmark error ↓ "
        "| faces missed |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---:|\n"
        "| same-clip | *copy source* | 1 | 0.650 | 0.930 | 0.910 | — | 0.0410 | 2 / 576 |\n"
        "| same-clip | CainGAN ★ | 8 | 0.700 | 0.950 | 0.900 | 30.00 | 0.0400 | 0 / 576 |\n"
        "| same-clip | FSHM | 8 | 0.612 | 0.900 | 0.800 | 45.68 | 0.0500 | 3 / 576 |\n"
        "| cross-clip | CainGAN ★ | 1 | 0.500 | 0.900 | — | 60.00 | 0.0600 | 9 / 320 |")
    doc = json.loads(er.results_json(rows, [], {}, []))
    assert doc["rows"][0]["fid"] is None and doc["rows"][0]["baseline"] is True
    assert doc["rows"][3]["csim_torch"] is None and doc["rows"][3]["default"] is True


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
    m = em.load_method(arch, tmp_path / arch)  # a run directory: its newest state
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
    m = em.load_method("CainGAN", path)
    assert (m.arch, m.step, m.image_size, m.k_fixed) == ("caingan", 3, SIZE, None)
    assert m.sha256 == file_hash(path)
    with pytest.raises(CainGANError, match="not found"):
        em.load_method("x", tmp_path / "missing.safetensors")


def test_warp_model_renders_above_its_network_size_and_is_scored_at_the_evaluation_size(tmp_path):
    """A warp-guided model (networks at 32², output 128²) evaluated on 64² crops: points go in at
    32², the 128² output comes back INTER_AREA-downscaled to 64²."""
    import dataclasses

    pytest.importorskip("caingan.nn.warp_model")
    from caingan.config import ModelConfig
    from caingan.nn.checkpoint import save_model
    from caingan.nn.model import build_network

    torch.manual_seed(0)
    cfg = dataclasses.replace(ModelConfig.tiny(32), warp=True, output_size=128)
    path = save_model(tmp_path / "w.safetensors", build_network(cfg), cfg, {"arch": "caingan"})
    m = em.load_method("warp", path)
    assert (m.image_size, m.output_size) == (32, 128)
    data = ep.build_eval_set([fake_clip("c", 40)], 3, 2, 0, progress=False)
    out = em.generate(m, data, 2)
    assert out.shape == (3, SIZE, SIZE, 3) and out.dtype == np.uint8
    m.reenactor.set_sources(list(data.source_frames[0][:2]), list(data.source_points[0][:2]))
    raw = m.reenactor.generate_batch(rescale_points(data.target_points, SIZE, 32)).image
    assert raw.shape == (3, 128, 128, 3)
    want = np.stack([cv2.resize(i, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for i in raw])
    assert np.array_equal(out, want)


# --- the real metrics on real faces ---------------------------------------------------------


def stills_clip(person: int, detector) -> ep.TestClip:
    paths = [still(person, i) for i in range(1, 6)]
    frames = np.stack([cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (128, 128),
                                  interpolation=cv2.INTER_AREA) for p in paths])
    points = np.stack([detector.detect(f).points for f in frames])
    return ep.TestClip(paths[0].parent.name, len(frames), lambda: (frames, points))


@pytest.mark.slow
def test_scorer_perfect_copy_beats_another_person(tmp_path):
    from train.evaluation import metrics
    from train.evaluation.scorer import Scorer
    from caingan.face.landmarks import LandmarkDetector
    from caingan.thirdparty import fid_inception_path

    try:
        inception = metrics.InceptionFeatures(fid_inception_path(download=False), batch_size=8)
    except Exception as exc:
        pytest.skip(f"FID Inception weights unavailable: {exc}")
    det = LandmarkDetector("dlib")
    data = ep.build_eval_set([stills_clip(0, det), stills_clip(5, det)], 3, 2, 0,
                             progress=False, reserve=2)
    scorer = Scorer(data, inception=inception, detector=det, fid_method="lowrank", progress=False)
    perfect = scorer.score(data.target_frames.copy())
    assert perfect["ssim"] == pytest.approx(1.0) and perfect["csim"] == pytest.approx(1.0)
    assert abs(perfect["fid"]) < 1e-6 and perfect["faces_missed"] == 0
    floor, missed = scorer.detector_floor()
    assert perfect["landmark_error"] == pytest.approx(floor) and missed == 0
    swapped = scorer.score(data.target_frames[::-1].copy())   # the two people swapped
    assert swapped["ssim"] < 0.5 < perfect["ssim"]
    assert swapped["csim"] < perfect["csim"] - 0.05
    assert abs(swapped["fid"]) < 1e-6   # FID compares sets: the same frames in another order
    assert swapped["landmark_error"] > floor + 0.02
    if scorer.face_id is not None:      # CSIM (landmarks): the torch descriptor, framed by the points
        assert perfect["csim_torch"] == pytest.approx(1.0, abs=1e-6)
        assert swapped["csim_torch"] < perfect["csim_torch"] - 0.05
    else:
        assert np.isnan(perfect["csim_torch"]) and "thirdparty" in scorer.face_id_note
    blank = scorer.score(np.full_like(data.target_frames, 127))
    assert blank["faces_missed"] == blank["n"] and np.isnan(blank["landmark_error"])
    assert blank["csim_fallbacks"] == blank["n"]
    assert blank["fid"] > 100
    # Scoring the same pixels again answers from the memo: the same numbers, no network run.
    calls = []
    scorer.inception = lambda x: calls.append(len(x)) or np.zeros((len(x), 2048))
    again = scorer.score(data.target_frames[::-1].copy())
    assert calls == [] and again["csim"] == swapped["csim"] and again["fid"] == swapped["fid"]


def test_headroom_regions_cover_their_part_and_outside_inverts():
    from caingan.face.landmark_edit import mean_face
    from train.evaluation.headroom import OUTSIDE_FACE, REGIONS, region_alpha

    p = mean_face(128.0)[None].astype(np.float32)
    mouth = region_alpha(p, 128, REGIONS["inner mouth"], 4)[0, ..., 0]
    x, y = np.round(p[0, 66]).astype(int)
    assert mouth[y, x] > 0.9 and mouth[10, 10] == 0 and 0 < mouth.mean() < 0.05
    outside = region_alpha(p, 128, OUTSIDE_FACE, 0, outside=True)[0, ..., 0]
    x, y = np.round(p[0, 30]).astype(int)                       # nose tip: inside the face
    assert outside[y, x] == 0 and outside[2, 2] == 1


def test_personalize_settings_are_typed_by_the_field(tmp_path):
    """`--personalize-set FIELD=VALUE` converts by the field's type: "false" is False, "2" is a
    float for a float field; unknown fields and unparseable values are refused by name."""
    from caingan.nn.checkpoint import save_model
    from caingan.config import ModelConfig
    from caingan.nn.model import build_network

    cfg = ModelConfig.tiny(SIZE)
    cfg.warp = True
    path = save_model(tmp_path / "w.safetensors", build_network(cfg), cfg, {"arch": "caingan"})

    def args(*sets):
        return SimpleNamespace(personalize_set=list(sets), personalize_steps=None,
                               personalize_tune=None, device="cpu")

    [m] = em.personalized_methods([("W", str(path))], ["W"],
                                  args("move=0.5", "lr=0.002", "steps=7", "tune=generator"))
    c = m.reenactor.cfg
    assert (c.move, c.lr, c.steps, c.tune) == (0.5, 0.002, 7, "generator")
    assert isinstance(c.lr, float) and isinstance(c.steps, int)
    for bad, match in [("steps=1.5", "steps wants an integer"), ("nope=1", "no field 'nope'"),
                       ("lr", "FIELD=VALUE"), ("lr=fast", "lr wants a number"), ("lr=1", "lr must be in")]:
        with pytest.raises(CainGANError, match=match):
            em.personalized_methods([("W", str(path))], ["W"], args(bad))


def test_render_overrides_read_booleans_as_words():
    from caingan.config import ConfigError, RenderSettings, apply_overrides

    d = apply_overrides(RenderSettings, RenderSettings().to_dict(),
                        ["eyelids=false", "mouth_gap=bands", "mix_blur=0"])
    settings = RenderSettings.from_dict(d)
    assert (settings.eyelids, settings.mouth_gap, settings.mix_blur) == (False, "bands", 0.0)
    assert RenderSettings.from_dict(apply_overrides(RenderSettings, d, ["eyelids=ON"])).eyelids
    with pytest.raises(ConfigError, match="true or false"):
        apply_overrides(RenderSettings, d, ["eyelids=maybe"])
    with pytest.raises(ConfigError, match="no field 'learned_flow'"):
        apply_overrides(RenderSettings, d, ["learned_flow=false"])


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "empty", "not a zip"])
def test_cli_damaged_cache_file_is_named_with_what_to_do(tmp_path, tiny_cache, capsys, damage):
    """caingan-eval on a cache whose test clip's .npz was cut short (a full disk, a killed
    copy): one line naming the file and saying to run the preparation again, exit 2 (it was a
    BadZipFile traceback)."""
    import json
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(tiny_cache, cache)
    rec = next(c for c in json.loads((cache / "index.json").read_text())["clips"]
               if c["split"] == "test")
    victim = cache / rec["file"]
    data = victim.read_bytes()
    victim.write_bytes({"truncated": data[:len(data) // 2], "empty": b"",
                        "not a zip": b"hello"}[damage])
    rc = ev.main(["--cache", str(cache), "--baseline", "copy", "--k", "1", "--targets", "4",
                  "--out", str(tmp_path / "R.md")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err, err
    last = err.strip().splitlines()[-1]          # after the progress bar
    assert last.startswith("error: cache file ") and str(victim) in last
    assert "is damaged or truncated" in last and "run caingan-prepare again with the same " \
                                                 "options" in last
    assert not (tmp_path / "R.md").exists()
