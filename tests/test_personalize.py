"""Personalization without the GUI: fine-tuning, applying and removing it, the store, reuse,
the same-person check, `caingan-export --personalize` and the evaluator's personalized rows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from caingan.config import ModelConfig, RenderSettings
from caingan.errors import CheckpointError
from caingan.face.identity import FaceIdentity, identity_outliers
from caingan.face.landmark_edit import mean_face
from caingan.nn.checkpoint import save_model
from caingan.nn.model import build_network
from caingan.pipeline.export_cli import cli_main
from caingan.pipeline.inference import Reenactor
from caingan.pipeline.personal_store import PersonalStore, personalize_reenactor
from caingan.pipeline.personalize import (PersonalizeConfig, PersonalizeError, personalize,
                                          source_fingerprints, sources_key, tuned_names)

S = 64


def tiny_warp() -> ModelConfig:
    return ModelConfig(image_size=S, width=0.125, embed_channels=16, max_channels=256, warp=True,
                       output_size=128)


@pytest.fixture(scope="module")
def warp_weights(tmp_path_factory) -> Path:
    """A random tiny warp-guided model rendering as shipped, but with its generator free to paint
    anywhere (its weights show in the render, so tuning them changes it)."""
    torch.manual_seed(0)
    cfg = tiny_warp()
    settings = RenderSettings.for_model(cfg).replace(gen_region="free")
    return save_model(tmp_path_factory.mktemp("w") / "warp", build_network(cfg), cfg, settings=settings)


@pytest.fixture(scope="module")
def paper_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(S)
    return save_model(tmp_path_factory.mktemp("w") / "paper", build_network(cfg), cfg)


def faces(n: int, size: int = 128, seed: int = 0):
    """n textured crops with plausible, slightly different landmarks."""
    import cv2
    rng = np.random.default_rng(seed)
    imgs, pts = [], []
    for i in range(n):
        base = rng.integers(0, 255, (size // 8, size // 8, 3)).astype(np.uint8)
        imgs.append(cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC))
        pts.append((mean_face(float(size)) + rng.normal(0, size * 0.01, (68, 2))).astype(np.float32))
    return imgs, pts


@pytest.fixture()
def reenactor(warp_weights) -> Reenactor:
    torch.set_num_threads(1)
    return Reenactor.from_checkpoint(warp_weights, device="cpu")


def render(r: Reenactor, imgs, pts) -> np.ndarray:
    r.set_sources(imgs, pts)
    return r.generate(pts[0] * S / imgs[0].shape[0]).image


def test_personalize_config_refuses_bad_settings():
    for bad in ({"steps": 0}, {"steps": 2.5}, {"tune": "everything"}, {"tune": "tail"}, {"lr": float("nan")},
                {"lr": 1.0}, {"batch": 0}, {"context": 17}, {"train_side": 8}, {"blend": "yes"},
                {"tune": "none", "blend": False}):
        with pytest.raises(PersonalizeError):
            PersonalizeConfig(**bad)


@pytest.mark.slow
def test_personalize_changes_only_the_tuned_layers_and_can_be_removed_exactly(reenactor):
    imgs, pts = faces(3)
    general = render(reenactor, imgs, pts)
    p = personalize(reenactor.model, imgs, pts, PersonalizeConfig(steps=3, tune="generator", lr=1e-3,
                                                                  check_every=0),
                    base_id=reenactor.model_id)
    assert set(p.deltas) == set(tuned_names(reenactor.model, "generator"))
    assert set(p.deltas) == {n for n, _ in reenactor.model.named_parameters() if n.startswith("generator.")}
    assert any(float(d.abs().max()) > 0 for d in p.deltas.values())
    assert np.array_equal(render(reenactor, imgs, pts), general)     # the model was not touched
    reenactor.set_personalization(p)
    personal = render(reenactor, imgs, pts)
    assert np.abs(personal.astype(int) - general).mean() > 0.05
    reenactor.set_personalization(None)
    assert np.array_equal(render(reenactor, imgs, pts), general)


@pytest.mark.slow
def test_personalize_one_photo_and_sixteen(reenactor):
    for n in (1, 16):
        imgs, pts = faces(n, seed=n)
        seen = []
        p = personalize(reenactor.model, imgs, pts, PersonalizeConfig(steps=2, tune="generator", batch=1),
                        progress=seen.append)
        assert p is not None and p.meta["sources"] == n
        total = 2 + (n if n >= 3 else 0)          # a step per photo of the blend fit, then 2
        assert [s.step for s in seen] == list(range(1, total + 1)) and seen[-1].eta_s == 0
        assert {s.steps for s in seen} == {total}
    with pytest.raises(PersonalizeError, match="1–16"):
        personalize(reenactor.model, *faces(17), PersonalizeConfig(steps=1))


@pytest.mark.slow
def test_personalize_keeps_the_weights_that_render_held_out_photos_best(reenactor, monkeypatch):
    imgs, pts = faces(8)
    gentle = personalize(reenactor.model, imgs, pts, PersonalizeConfig(steps=4, tune="generator", lr=1e-4,
                                                                       check_every=2, blend=False))
    assert gentle.meta["held_out"] == [2, 5] and gentle.meta["kept_step"] in (0, 2, 4)
    before, best = gentle.meta["held_out_loss"]
    assert best <= before
    # Held-out photos rendered worse at every check (as fine-tuning on too few photos can do):
    # nothing changes.
    import caingan.pipeline.personalize as pz
    calls = iter(range(100))
    monkeypatch.setattr(pz, "_held_loss", lambda *a, **k: 1.0 + next(calls))
    wild = personalize(reenactor.model, imgs, pts, PersonalizeConfig(steps=4, tune="generator", lr=1e-2,
                                                                     check_every=2, blend=False))
    assert wild.changes_nothing and wild.meta["kept_step"] == 0
    assert wild.meta["held_out_loss"] == [1.0, 1.0]
    assert "general weights are kept" in wild.summary()
    # Better at step 2, worse again at step 4: step 2's weights are kept.
    values = iter([3.0, 1.0, 2.0])
    monkeypatch.setattr(pz, "_held_loss", lambda *a, **k: next(values))
    mid = personalize(reenactor.model, imgs, pts, PersonalizeConfig(steps=4, tune="generator", check_every=2, blend=False))
    assert mid.meta["kept_step"] == 2 and not mid.changes_nothing and "66.7 %" in mid.summary()
    reenactor.set_personalization(wild)
    general = render(reenactor, imgs, pts)
    reenactor.set_personalization(None)
    assert np.array_equal(render(reenactor, imgs, pts), general)
    # Two photos: nothing to hold out, every step is kept.
    two = personalize(reenactor.model, *faces(2), PersonalizeConfig(steps=2, tune="generator"))
    assert "held_out" not in two.meta and not two.changes_nothing


def test_personalize_cancelled_keeps_nothing(reenactor):
    imgs, pts = faces(2)
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 2
    assert personalize(reenactor.model, imgs, pts, PersonalizeConfig(steps=50, tune="generator"),
                       should_stop=stop) is None
    assert len(calls) == 3


def test_personalization_for_other_weights_is_refused_and_state_kept(reenactor, warp_weights):
    imgs, pts = faces(2)
    p = personalize(reenactor.model, imgs, pts, PersonalizeConfig(steps=1, tune="generator", lr=1e-3,
                                                                  check_every=0))
    reenactor.set_personalization(p)
    before = render(reenactor, imgs, pts)
    torch.manual_seed(1)
    other = Reenactor(build_network(tiny_warp()), device="cpu")
    with pytest.raises(PersonalizeError, match="other model weights"):
        other.set_personalization(p)
    p.base_id = "0" * 24
    with pytest.raises(PersonalizeError):
        reenactor.set_personalization(p)
    assert np.array_equal(render(reenactor, imgs, pts), before)


def test_paper_model_cannot_be_personalized(paper_weights):
    r = Reenactor.from_checkpoint(paper_weights, device="cpu")
    with pytest.raises(PersonalizeError, match="warp-guided"):
        personalize(r.model, *faces(2, size=S), PersonalizeConfig(steps=1))


def test_personalization_key_ignores_source_order_but_not_content():
    imgs, pts = faces(3)
    key = sources_key(source_fingerprints(imgs, pts), "base")
    assert key == sources_key(source_fingerprints(imgs[::-1], pts[::-1]), "base")
    assert key != sources_key(source_fingerprints(imgs[:2], pts[:2]), "base")
    assert key != sources_key(source_fingerprints(imgs, pts), "other-base")
    moved = [p + 0.5 for p in pts]
    assert key != sources_key(source_fingerprints(imgs, moved), "base")


def test_personal_store_round_trip_list_delete_and_damage(reenactor, tmp_path):
    store = PersonalStore(tmp_path / "personal")
    imgs, pts = faces(2)
    p, reused = personalize_reenactor(reenactor, imgs, pts, cfg=PersonalizeConfig(steps=2, tune="generator"),
                                      store=store, labels=["a.png", "b.png"])
    assert not reused and reenactor.personalization is p
    (entry,) = store.list()
    assert entry.key == p.key and entry.meta["labels"] == ["a.png", "b.png"]
    assert "2 photo(s)" in entry.describe()
    loaded = store.load(p.key)
    assert set(loaded.deltas) == set(p.deltas) and loaded.base_id == p.base_id
    # Bundled weights stay untouched: the store refuses the assets folder.
    from caingan.assets import ASSETS
    with pytest.raises(PersonalizeError, match="bundled"):
        PersonalStore(ASSETS / "personal")
    with pytest.raises(PersonalizeError):
        store.path("../../etc/passwd")
    # A damaged file is reported by name, still listed, and can be deleted.
    store.path(p.key).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=p.key):
        store.load(p.key)
    assert "error" in store.list()[0].meta
    assert store.delete(p.key) and not store.has(p.key) and store.list() == []
    assert not store.delete(p.key)


@pytest.mark.slow
def test_personalize_reenactor_reuses_the_stored_one_and_cancel_keeps_the_previous(reenactor, warp_weights,
                                                                                   tmp_path):
    store = PersonalStore(tmp_path)
    imgs, pts = faces(3)
    cfg = PersonalizeConfig(steps=2, tune="generator", lr=1e-3, check_every=0)
    first, _ = personalize_reenactor(reenactor, imgs, pts, cfg=cfg, store=store)
    personal = render(reenactor, imgs, pts)
    fresh = Reenactor.from_checkpoint(warp_weights, device="cpu")     # another session
    steps = []
    again, reused = personalize_reenactor(fresh, imgs[::-1], pts[::-1], cfg=cfg, store=store,
                                          progress=steps.append)
    assert reused and steps == [] and again.key == first.key
    assert np.array_equal(render(fresh, imgs, pts), personal)
    # More steps than stored: trained again; cancelled half-way: the previous one stays.
    got, reused = personalize_reenactor(fresh, imgs, pts, cfg=PersonalizeConfig(steps=40, tune="generator"),
                                        store=store, should_stop=lambda: True)
    assert got is None and not reused and fresh.personalization.key == first.key
    assert np.array_equal(render(fresh, imgs, pts), personal)


def test_identity_outliers_groups_by_dlib_distance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 128), rng.normal(0, 1, 128)
    a, b = a / np.linalg.norm(a) * 0.5, b / np.linalg.norm(b) * 0.5
    same = [a + rng.normal(0, 0.01, 128) for _ in range(3)]
    assert identity_outliers(np.stack(same)) == []
    assert identity_outliers(np.stack(same + [b])) == [3]
    assert identity_outliers(np.stack([b] + same)) == [0]
    assert identity_outliers(np.stack([a])) == []


@pytest.mark.slow
def test_identity_check_tells_two_real_people_apart(stills, detector_dlib):
    from caingan.face.crop import crop_face
    from caingan.media.images import load_image

    people = {}
    for path in stills:
        people.setdefault(path.parent.name, []).append(path)
    names = sorted(people)[:2]
    paths = people[names[0]][:3] + people[names[1]][:1]
    crops = []
    for path in paths:
        img = load_image(path)
        crops.append(crop_face(img, detector_dlib.detect(img).points, 128))
    d = FaceIdentity().descriptors([c.image for c in crops], [c.points for c in crops])
    assert identity_outliers(d) == [3]


@pytest.fixture(scope="module")
def detector_dlib():
    from caingan.face.landmarks import LandmarkDetector
    return LandmarkDetector("dlib")


@pytest.mark.slow
def test_export_personalize_trains_once_then_reuses(warp_weights, paper_weights, stills, tmp_path, capsys):
    lms = tmp_path / "pose.json"
    import json
    lms.write_text(json.dumps({"image_size": S, "points": (mean_face(float(S))).tolist()}))
    photos = [str(p) for p in stills if p.parent == stills[0].parent][:2]
    common = ["--weights", warp_weights, "--landmarks", lms, "--formats", "png",
              "--personal-dir", tmp_path / "store", "--device", "cpu"]
    args = [a for p in photos for a in ("--source", p)]
    code = cli_main([str(a) for a in common + args + ["--out", tmp_path / "a", "--personalize", "2"]])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "personalized to 2 photo(s)" in err and "reused" not in err
    assert len(list((tmp_path / "store").glob("*.safetensors"))) == 1
    code = cli_main([str(a) for a in common + [a for p in photos[::-1] for a in ("--source", p)] + ["--out", tmp_path / "b", "--personalize", "2"]])
    err = capsys.readouterr().err
    assert code == 0 and re.search(r"personalized to 2 photo\(s\) \(reused from", err), err
    code = cli_main([str(a) for a in common + args + ["--out", tmp_path / "c"]])
    assert code == 0
    a = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(next((tmp_path / "a").glob("frame_*.png"))))
    c = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(next((tmp_path / "c").glob("frame_*.png"))))
    assert not np.array_equal(a, c)        # the personalized frames differ
    code = cli_main([str(a) for a in ["--weights", paper_weights, "--landmarks", lms, "--personalize",
                                      "--source", photos[0], "--out", tmp_path / "d", "--device", "cpu"]])
    err = capsys.readouterr().err
    assert code == 2 and "warp-guided" in err
    code = cli_main([str(a) for a in common + args + ["--out", tmp_path / "e", "--personalize", "0"]])
    assert code == 2


def test_a_personalization_changes_the_render_settings_only_while_applied(reenactor):
    """A personalization's render settings are passed with every render while it is applied;
    the Reenactor's general settings and the model stay as they are, and removing it renders as
    before. One asking to change a setting a personalization may not change, or a bad value, is
    refused and the state is kept."""
    from caingan.pipeline.personalize import Personalization

    imgs, pts = faces(3)
    general = render(reenactor, imgs, pts)
    settings = reenactor.settings
    p = Personalization("k", reenactor.model_id, {}, {"model_config": {"mix_power": 64.0, "mix_blur": 0.1}})
    reenactor.set_personalization(p)
    assert reenactor.render_settings == settings.replace(mix_power=64.0, mix_blur=0.1)
    assert reenactor.settings == settings and not hasattr(reenactor.model.cfg, "mix_power")
    assert not np.array_equal(render(reenactor, imgs, pts), general)
    reenactor.set_personalization(None)
    assert reenactor.render_settings == settings
    assert np.array_equal(render(reenactor, imgs, pts), general)
    for bad, match in (({"mouth_gap": "stretch"}, "mouth_gap"), ({"learned_flow": True}, "learned_flow"),
                       ({"mix_power": "yes"}, "mix_power")):
        with pytest.raises(PersonalizeError, match=match):
            reenactor.set_personalization(Personalization("k", p.base_id, {}, {"model_config": bad}))
        assert reenactor.personalization is None and reenactor.render_settings == settings
    assert np.array_equal(render(reenactor, imgs, pts), general)


@pytest.mark.slow
def test_personalize_fits_the_blend_by_leave_one_out_and_keeps_the_general_one_unless_better(
        reenactor, monkeypatch):
    """The default personalization changes no weights: it renders each photo from the others
    under each candidate blend and keeps the one whose faces score best by SSIM, only if it beats
    the general blend by MIN_GAIN and keeps the faces as like the person (dlib's descriptor);
    applied, the model renders with it, and removed, as before."""
    import caingan.pipeline.blend_fit as bf

    imgs, pts = faces(4)
    general = render(reenactor, imgs, pts)
    n = len(bf.CANDIDATES)

    def scored(per_candidate, per_photo=None):
        """SSIM by candidate, or by (photo, candidate) from `per_photo`: calls go photo by
        photo, every candidate per photo."""
        calls = iter(range(10_000))

        def score(image, real, face):
            i = next(calls)
            return per_photo[i // n][i % n] if per_photo is not None else per_candidate[i % n]
        return score

    class Identity:
        """Descriptors as dlib's: the real photos all alike; renders alike unless their
        candidate is among `unlike`."""
        unlike: tuple = ()

        def __init__(self):
            self.calls = 0

        def descriptors(self, images, points):
            if len(images) > 1:                      # the real photos, once
                return np.tile(np.eye(128)[0], (len(images), 1))
            c, self.calls = self.calls % n, self.calls + 1
            return np.eye(128)[[1 if c in self.unlike else 0]]

    monkeypatch.setattr(bf, "FaceIdentity", Identity)

    better = [0.5] * n
    better[2] = 0.5 + 2 * bf.MIN_GAIN
    monkeypatch.setattr(bf, "ssim", scored(better))
    seen = []
    p = personalize(reenactor.model, imgs, pts, base_id=reenactor.model_id, progress=seen.append)
    assert p.deltas == {} and p.settings == bf.CANDIDATES[2]
    assert [s.step for s in seen] == [1, 2, 3, 4]
    assert "blend fitted" in p.summary() and "0.500 → 0.504" in p.summary()
    reenactor.set_personalization(p)
    for name, value in bf.CANDIDATES[2].items():
        assert getattr(reenactor.render_settings, name) == value != getattr(reenactor.settings, name)
    reenactor.set_personalization(None)
    assert reenactor.render_settings == reenactor.settings
    assert np.array_equal(render(reenactor, imgs, pts), general)

    # Better faces by SSIM but less like the person (a mix of photos of other light): not chosen.
    Identity.unlike = (2,)
    assert personalize(reenactor.model, imgs, pts, base_id=reenactor.model_id).changes_nothing
    better[1] = 0.5 + bf.MIN_GAIN
    assert personalize(reenactor.model, imgs, pts, base_id=reenactor.model_id).settings == bf.CANDIDATES[1]
    Identity.unlike = ()

    # The mean over the photos decides: better for one of four by more than 4 × MIN_GAIN.
    one = [[0.5] * n for _ in imgs]
    one[0][1] = 0.5 + 5 * bf.MIN_GAIN
    monkeypatch.setattr(bf, "ssim", scored(None, one))
    assert personalize(reenactor.model, imgs, pts, base_id=reenactor.model_id).settings == bf.CANDIDATES[1]

    barely = [0.5] * n
    barely[3] = 0.5 + bf.MIN_GAIN / 2
    monkeypatch.setattr(bf, "ssim", scored(barely))
    kept = personalize(reenactor.model, imgs, pts, base_id=reenactor.model_id)
    assert kept.changes_nothing and "general blend renders" in kept.summary()
    # Two photos: nothing is mixed when one is rendered from the other; nothing to fit.
    two = personalize(reenactor.model, *faces(2), base_id=reenactor.model_id)
    assert two.changes_nothing and "needs 3 photos" in two.summary()


def test_the_source_limit_is_one_number():
    """At most MAX_SOURCES photos: the editor, caingan-export and personalization take the one
    constant of caingan.config; no module defines its own."""
    import ast

    from caingan import config
    from caingan.pipeline import export_inputs, personalize as pz

    assert export_inputs.MAX_SOURCES is pz.MAX_SOURCES is config.MAX_SOURCES == 16
    repo = Path(__file__).resolve().parents[1]
    defined = []
    for package in ("caingan", "app", "train"):
        for path in sorted((repo / package).rglob("*.py")):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "MAX_SOURCES"
                                                        for t in node.targets):
                    defined.append(str(path.relative_to(repo)))
    assert defined == ["caingan/config.py"]


def test_an_export_of_other_render_settings_is_another_job(reenactor):
    """The exporter's job hash (what decides whether frames on disk are reused) follows the
    render settings a frame is rendered with: a personalization that only changes the blend is
    another job, removing it is the first again."""
    from caingan.pipeline.export_store import job_hash
    from caingan.pipeline.personalize import Personalization

    imgs, pts = faces(3)
    reenactor.set_sources(imgs, pts)
    general = job_hash(reenactor, imgs, pts, None, None)
    p = Personalization("k", reenactor.model_id, {}, {"model_config": {"mix_blur": 0.1}})
    reenactor.set_personalization(p)
    assert job_hash(reenactor, imgs, pts, None, None) != general
    reenactor.set_personalization(None)
    assert job_hash(reenactor, imgs, pts, None, None) == general
