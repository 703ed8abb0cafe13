"""The weights shipped in assets/ (the default warp-guided model and the paper's model) load, and
they learned: held-out people are reconstructed far better than by the same network untrained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cv2

from caingan.assets import DEFAULT_WEIGHTS, PAPER_WEIGHTS
from caingan.config import MODEL_PRESETS, RenderSettings
from caingan.face.landmark_file import rescale_points
from caingan.errors import CheckpointError
from caingan.nn.checkpoint import load_checkpoint, load_model, read_meta
from caingan.nn.model import build_network, count_parameters
from caingan.pipeline.inference import Reenactor

BUNDLED = [pytest.param(DEFAULT_WEIGHTS, id="warp-default"), pytest.param(PAPER_WEIGHTS, id="paper-small")]


@pytest.fixture(scope="module")
def held_out_clips(shared_data):
    """Crops + landmarks of 40 frames of each of the first three test-split clips (people never
    trained on)."""
    from train.prepare import clips_from_csv, process_clip

    clips = [c for c in clips_from_csv(shared_data) if c["split"] == "test"][:3]
    out = []
    for clip in clips:
        arrays = process_clip(clip, size=128, every=3, max_frames=40)
        assert len(arrays["frames"]) >= 36, clip["rel"]
        out.append((arrays["frames"], arrays["points"]))
    return out


def _l1(reenactor: Reenactor, frames, points) -> float:
    """Mean |generated − truth| over 8 targets, each from 4 other frames of the clip."""
    errs = []
    for t in range(0, 40 - 8, 4)[:8]:
        src = [t + 1, t + 3, t + 5, t + 7]
        reenactor.set_sources([frames[i] for i in src], [points[i] for i in src])
        size = frames.shape[1]
        out = reenactor.generate(rescale_points(points[t], size, reenactor.image_size)).image
        if out.shape[0] != size:
            out = cv2.resize(out, (size, size), interpolation=cv2.INTER_AREA)
        errs.append(np.abs(out.astype(np.float32) - frames[t].astype(np.float32)).mean())
    return float(np.mean(errs))


def test_the_shipped_default_json_is_what_the_default_preset_builds():
    """assets/caingan-warp.json: the architecture of the code's default preset, the default
    render settings at its trained size, and the parameter count of that network."""
    meta = read_meta(DEFAULT_WEIGHTS)
    cfg = MODEL_PRESETS["warp"]()
    assert meta["config"] == cfg.to_dict()
    assert meta["render"] == RenderSettings.for_model(cfg).to_dict() == RenderSettings().to_dict()
    assert meta["parameters"] == count_parameters(build_network(cfg))
    r = Reenactor.from_checkpoint(DEFAULT_WEIGHTS, device="cpu")
    assert r.config == cfg and r.settings == RenderSettings() and r.output_size == 256


def test_bundling_a_run_of_the_default_preset_reproduces_the_shipped_json(tmp_path):
    """train.bundle on a run of `--preset warp` (one training state) ships what is bundled:
    the same kind, architecture, render settings and parameter count; `--set` changes one
    render setting and nothing else."""
    from train import state as st
    from train.bundle import export, main
    from train.config import TrainConfig
    from train.models import build_generator
    from caingan.nn.discriminator import MultiscaleDiscriminator

    cfg = TrainConfig(model=MODEL_PRESETS["warp"](), run_dir=str(tmp_path / "run"))
    gen = build_generator(cfg)
    discs = {"d_i": MultiscaleDiscriminator(6, cfg.model), "d_p": MultiscaleDiscriminator(6, cfg.model)}
    opts = {"g": torch.optim.Adam(gen.parameters()),
            "d": torch.optim.Adam([p for d in discs.values() for p in d.parameters()])}
    counters = {"step": 3, "epoch": 0, "batch_in_epoch": 3, "best_val": None}
    st.save_state(tmp_path / "run", 3, {"gen": gen, **discs}, opts, counters, cfg.to_dict())
    model_path, _ = export(tmp_path / "run", tmp_path / "assets")
    made, shipped = read_meta(model_path), read_meta(DEFAULT_WEIGHTS)
    assert model_path.name == DEFAULT_WEIGHTS.name
    for key in ("format", "format_version", "kind", "config", "render", "parameters"):
        assert made[key] == shipped[key], key
    assert main(["--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "other"),
                 "--set", "mix_power=8"]) == 0
    assert read_meta(tmp_path / "other" / DEFAULT_WEIGHTS.name)["render"] == {**shipped["render"], "mix_power": 8.0}
    assert main(["--run-dir", str(tmp_path / "run"), "--out", str(tmp_path / "bad"),
                 "--set", "learned_flow=true"]) == 2


def test_the_bundled_weights_load_without_their_retired_flow_head(tmp_path):
    """The shipped tensor file still holds the learned flow correction's head, which no model
    has now: loading drops exactly those tensors and keeps every other one as it is; any other
    tensor the model lacks is still refused."""
    from caingan.nn.warp_model import RETIRED_TENSORS

    tensors, _ = load_checkpoint(DEFAULT_WEIGHTS)
    retired = {k for k in tensors if k.startswith(RETIRED_TENSORS)}
    assert retired and all(k.startswith("embedder.head_flow.") for k in retired)
    model = load_model(DEFAULT_WEIGHTS)
    own = model.state_dict()
    assert set(own) == set(tensors) - retired
    assert all(torch.equal(v, tensors[k]) for k, v in own.items())
    extra = {**own, "embedder.head_other.weight": torch.zeros(2)}
    from caingan.nn.checkpoint import save_checkpoint
    save_checkpoint(tmp_path / "x", extra, dict(model.checkpoint_meta, tensor_file_bytes=None))
    with pytest.raises(CheckpointError, match="unexpected key"):
        load_model(tmp_path / "x")


def test_bundled_weights_load_with_their_config():
    default = Reenactor.from_checkpoint(DEFAULT_WEIGHTS, device="cpu")
    assert default.warp and default.image_size == 128 and default.output_size == 256
    assert default.config.targeted and default.config.responsibility
    paper = Reenactor.from_checkpoint(PAPER_WEIGHTS, device="cpu")
    assert not paper.warp and paper.image_size == paper.output_size == 128


@pytest.mark.slow
@pytest.mark.parametrize("bundled", BUNDLED)
def test_bundled_weights_reconstruct_held_out_faces_better_than_untrained(held_out_clips, bundled):
    """The paper's model as shipped. The default model's networks with their outputs in use
    (`gen_region` "free": the generator's mask decides where it replaces the warp): trained, the
    mask keeps the warp where the warp is right (measured 8.1 grey levels of error against 32 for
    the same networks untrained, which paint over the face). The default render confines the
    generator further, to pixels no source covers (assets/MODEL_CARD.md), so this checks what
    the weights learned, not what they add to the default render."""
    nets = []
    for fresh in (False, True):
        model = load_model(bundled, "cpu")
        if fresh:                      # same architecture, fresh random weights
            torch.manual_seed(0)
            for m in model.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        r = Reenactor(model, "cpu")
        if r.warp:
            r.set_settings(r.settings.replace(gen_region="free"))
        nets.append(r)
    err_trained, err_untrained = (np.mean([_l1(r, f, p) for f, p in held_out_clips]) for r in nets)
    assert err_trained < 0.6 * err_untrained, (err_trained, err_untrained)
    assert err_trained < 40.0, err_trained      # mean abs error in 0..255 grey levels


@pytest.mark.slow
def test_default_model_opens_the_mouth_and_shuts_the_eyes_on_the_sample_face():
    """What a user gets from the Mouth open and Eyes close sliders on the app's sample face
    (scikit-image's astronaut, smiling with her teeth): the mouth's new opening is darker than the
    warp's stretched teeth, and shut eyes no longer show the dark irises the spline kept open."""
    from skimage import data

    from caingan.face.crop import crop_face
    from caingan.face.landmark_edit import EditParams, apply_sliders
    from caingan.face.landmarks import LandmarkDetector

    photo = data.astronaut()
    crop = crop_face(photo, LandmarkDetector("dlib").detect(photo).points, 256)
    assert Reenactor.from_checkpoint(DEFAULT_WEIGHTS, device="cpu").settings.mouth_gap == "cavity"

    def render(params: EditParams, **fields):
        """The shipped model, or the same weights with render settings changed."""
        r = Reenactor.from_checkpoint(DEFAULT_WEIGHTS, device="cpu")
        r.set_settings(r.settings.replace(**fields))
        r.set_sources([crop.image], [crop.points], output_size=256)
        target = apply_sliders(crop.points, params)
        img = r.generate(rescale_points(target, 256, r.image_size)).image
        return img.astype(np.float32).mean(-1), target

    def inside(points, idx, size=256):
        m = np.zeros((size, size), np.uint8)
        cv2.fillPoly(m, [np.round(points[list(idx)]).astype(np.int32)], 1)
        return m.astype(bool)

    opened, t = render(EditParams(mouth_open=1.0))
    stretched, _ = render(EditParams(mouth_open=1.0), mouth_gap="stretch")
    mouth = inside(t, range(60, 68))
    assert opened[mouth].mean() < stretched[mouth].mean() - 40     # 114 vs 198: dark, not long teeth

    shut, t = render(EditParams(eyes_close=1.0))
    folded, _ = render(EditParams(eyes_close=1.0), eyelids=False)
    # The spline alone (the field outside the face) is what left the irises showing: the crop
    # warped by it at the output's size.
    from caingan.nn import tps
    from caingan.nn.warp_field import LATTICE
    u = lambda q: tps.normalise_points(torch.from_numpy(np.asarray(q, np.float32))[None], 256)  # noqa: E731
    grid = tps.resize_grid(tps.tps_grids(u(crop.points)[:, None], u(t), LATTICE, 128)[0], 256)
    spline, _ = tps.sample(torch.from_numpy(crop.image).permute(2, 0, 1).float()[None] / 127.5 - 1, grid)
    kept_open = ((spline[0].permute(1, 2, 0) + 1) * 127.5).numpy().mean(-1)
    eyes = np.zeros((256, 256), bool)
    for a, b in ((36, 39), (42, 45)):      # a band above each eye's corner line: lid when shut
        w = np.linalg.norm(t[b] - t[a])
        c = (t[a] + t[b]) / 2
        y0, y1 = int(c[1] - 0.15 * w), int(c[1] - 0.02 * w) + 1
        eyes[y0:y1, int(t[a, 0]):int(t[b, 0]) + 1] = True
    dark = lambda img: float((img[eyes] < 70).mean())   # noqa: E731 — iris and pupil pixels
    assert dark(kept_open) > 1.5 * dark(shut)          # measured: 0.36 vs 0.21 (the lash line)
    # Without the lids kept apart the face's triangles fold where the lids meet: more iris shows.
    assert dark(folded) > dark(shut) + 0.02            # measured: 0.25 vs 0.21
