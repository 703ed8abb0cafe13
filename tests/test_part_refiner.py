"""The part refiner: crops aligned to the parts, a change pasted back only there, inside the
warp-guided model and its checkpoint, and its trainer end to end on the tiny cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caingan.face.landmark_edit import mean_face
from caingan.face.landmark_image import landmark_images
from caingan.nn.checkpoint import load_model, save_model
from caingan.nn.model import build_network
from caingan.nn.part_refiner import (OUTER_LIPS, PartRefiner, choose_sources, crop, gather_crops, paste,
                                     part_frame)
from tests.test_warp_model import plain, textured, tiny_warp


def points(size: int, seed: int = 0, shift=(0.0, 0.0)) -> torch.Tensor:
    p = mean_face(float(size)) + np.random.default_rng(seed).normal(0, size * 0.003, (68, 2))
    return torch.from_numpy((p + np.asarray(shift)).astype(np.float32))


def image(size: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(textured(size, seed)).permute(2, 0, 1)[None].float() / 127.5 - 1


def test_mouth_crop_is_centred_on_the_mouth_and_follows_it():
    size = 256
    p = points(size)[None]
    centre = p[0, list(OUTER_LIPS)].mean(0)
    img = torch.zeros(1, 1, size, size)
    y, x = int(round(float(centre[1]))), int(round(float(centre[0])))
    img[..., y - 2:y + 3, x - 2:x + 3] = 1.0            # a dot on the mouth's centre
    c = crop(img, part_frame(p, size, "mouth"), 64)[0, 0]
    peak = np.unravel_index(int(c.argmax()), c.shape)
    assert abs(peak[0] - 31.5) <= 2 and abs(peak[1] - 31.5) <= 2
    # Move the face: the crop moves with it, so the dot stays in the middle.
    moved = torch.roll(img, (10, -7), (-2, -1))
    c2 = crop(moved, part_frame(p + torch.tensor([-7.0, 10.0]), size, "mouth"), 64)[0, 0]
    assert torch.allclose(c, c2, atol=1e-4)


def test_left_eye_frame_is_the_mirror_image():
    size = 128
    p = points(size)[None]
    img = image(size)
    right = crop(img, part_frame(p, size, "right_eye"), 32)
    flipped_img = img.flip(-1)
    fp = p.clone()
    fp[..., 0] = size - 1 - fp[..., 0]
    fp = fp[:, _mirror_index()]
    left_of_flipped = crop(flipped_img, part_frame(fp, size, "left_eye"), 32)
    assert torch.allclose(right, left_of_flipped, atol=1e-3)


def _mirror_index() -> list[int]:
    """68-point indices under a horizontal flip (only the eyes matter here)."""
    idx = list(range(68))
    right, left = [36, 37, 38, 39, 40, 41], [45, 44, 43, 42, 47, 46]
    for a, b in zip(right, left):
        idx[a], idx[b] = b, a
    return idx


def test_paste_puts_a_change_only_around_the_part():
    size = 128
    p = points(size)[None]
    theta = part_frame(p, size, "mouth")
    change = torch.ones(1, 3, 64, 64)
    out = paste(change, theta, size)
    c = p[0, list(OUTER_LIPS)].mean(0)
    assert float(out[0, 0, int(c[1]), int(c[0])]) == pytest.approx(1.0, abs=1e-3)
    assert float(out[0, :, :20].abs().max()) == 0.0                  # forehead untouched
    assert float(out[0, :, :, :10].abs().max()) == 0.0               # left border untouched


def test_a_refiner_that_keeps_the_warp_changes_nothing_and_one_that_paints_changes_only_parts():
    size = 128
    img = image(size)
    p = points(size)[None]
    src = image(size, 1)[:, None]
    sp = points(size, 1)[None, None]
    r = PartRefiner(width=0.25)
    for net in (r.mouth, r.eye):
        torch.nn.init.constant_(net.out.bias, -60.0)                  # α = 0
    out, _ = r(img, p, src, sp)
    assert torch.equal(out, img.clamp(-1, 1))
    for net in (r.mouth, r.eye):
        torch.nn.init.zeros_(net.out.weight)
        net.out.bias.data[:] = torch.tensor([1.0, 1.0, 1.0, 60.0])     # paint white, α = 1
    out, results = r(img, p, src, sp)
    changed = (out - img).abs().amax(1)[0] > 1e-4
    assert changed.any()
    assert not changed[:15].any() and not changed[-12:].any()        # top of the head, the neck
    assert set(results) == {"mouth", "right_eye", "left_eye"}
    assert float(results["mouth"].alpha.detach().mean()) == pytest.approx(1.0)


def test_missing_points_leave_the_part_alone():
    size = 128
    img, p = image(size), points(size)[None]
    p[0, 60] = float("nan")                                          # one inner-lip point lost
    c = gather_crops(img, p, img, points(size)[None], "mouth")
    assert not bool(c.ok[0])
    r = PartRefiner(width=0.25)
    res = r.refine_part(c, "mouth")
    assert float(res.alpha.detach().abs().max()) == 0.0


def test_choose_sources_takes_the_most_responsible_source_per_part():
    size = 64
    p = points(size)[None]
    w = torch.zeros(1, 2, 1, 16, 16)
    w[:, 0] = 1.0
    w[:, 1, :, 10:] = 2.0            # source 1 owns the lower part of the face (the mouth)
    w = w / w.sum(1, keepdim=True)
    ch = choose_sources(w, p, size)
    assert int(ch["mouth"][0]) == 1 and int(ch["right_eye"][0]) == 0 and int(ch["left_eye"][0]) == 0


def test_model_with_refiner_renders_saves_and_loads(tmp_path):
    cfg = tiny_warp(part_refiner=True)
    torch.manual_seed(0)
    model = build_network(cfg).eval()
    assert model.refiner is not None
    k, res = 2, 128
    srcs = torch.cat([image(res, i) for i in range(k)])[None]
    sp = torch.stack([points(res, i) for i in range(k)])[None]
    tp = points(res, 5)[None]
    s_lms = landmark_images(sp[0].numpy() * 64 / 128, 64)[None]
    t_lm = landmark_images(tp.numpy() * 64 / 128, 64)
    with torch.no_grad():
        out = model.render(srcs, s_lms, t_lm, sp, tp, plain())
    assert out.image.shape == (1, 3, res, res) and torch.isfinite(out.image).all()
    path = save_model(tmp_path / "m", model, cfg)
    loaded = load_model(path)
    with torch.no_grad():
        again = loaded.render(srcs, s_lms, t_lm, sp, tp, plain())
    assert torch.equal(out.image, again.image)
    # The same weights without the refiner (a checkpoint from before it) are refused clearly.
    without = build_network(tiny_warp())
    with pytest.raises(Exception, match="unexpected key"):
        from caingan.nn.checkpoint import load_checkpoint, load_module_state
        load_module_state(without, load_checkpoint(path)[0], path)


@pytest.mark.slow
def test_refine_trainer_bank_fit_bundle(tmp_path, tiny_cache):
    from train.refine import main
    cfg = tiny_warp()
    torch.manual_seed(0)
    base = save_model(tmp_path / "base", build_network(cfg), cfg)
    bank = tmp_path / "bank.npz"
    main(["bank", "--cache", str(tiny_cache), "--base", str(base), "--set", "mouth_gap=bands",
          "--pairs", "8", "--batch", "4", "--holdout-groups", "0", "--out", str(bank)])
    run = tmp_path / "run"
    main(["fit", "--bank", str(bank), "--run", str(run), "--steps", "2", "--batch", "2",
          "--lambda-vgg", "0", "--save-every", "1", "--log-every", "1", "--width", "0.25"])
    main(["fit", "--bank", str(bank), "--run", str(run), "--steps", "3", "--batch", "2",
          "--lambda-vgg", "0", "--save-every", "1", "--log-every", "1", "--width", "0.25",
          "--gate", "oracle"])
    lines = (run / "log.jsonl").read_text().splitlines()
    logs = [__import__("json").loads(x) for x in lines]
    assert [x["step"] for x in logs] == [1, 2, 3]                      # resumed at 2
    assert "mouth.gate" in logs[-1] and "mouth.gate" not in logs[0]
    # The refiner alone warm-starts a new run (its width comes from the file).
    main(["export", "--run", str(run), "--out", str(tmp_path / "refiner")])
    run2 = tmp_path / "run2"
    main(["fit", "--bank", str(bank), "--run", str(run2), "--steps", "1", "--batch", "2",
          "--lambda-vgg", "0", "--save-every", "1", "--init", str(tmp_path / "refiner")])
    from caingan.nn.checkpoint import load_checkpoint
    a = load_checkpoint(tmp_path / "refiner")[0]
    b = load_checkpoint(sorted((run2 / "checkpoints").glob("*.safetensors"))[-1])[0]
    assert b["refiner.mouth.inp.weight"].shape == a["mouth.inp.weight"].shape   # width 0.25, not 1
    out = tmp_path / "joined"
    main(["bundle", "--base", str(base), "--set", "mouth_gap=bands", "--run", str(run),
          "--out", str(out)])
    m = load_model(out)
    assert m.cfg.part_refiner and m.checkpoint_meta["render"]["mouth_gap"] == "bands"
    assert m.checkpoint_meta["extra"]["part_refiner"]["step"] == 3


def test_reenactor_runs_a_refiner_model_at_any_output_size(tmp_path):
    """The editor path: the refiner works on whatever resolution the photo is shown at, and its
    change stays inside the face (the corners are the warp's, to the grey level)."""
    from caingan.pipeline.inference import Reenactor
    from tests.test_warp_model import face_points
    torch.manual_seed(0)
    cfg = tiny_warp(part_refiner=True, refiner_width=0.25)
    model = build_network(cfg)
    for net in (model.refiner.mouth, model.refiner.eye):
        net.out.bias.data[:] = torch.tensor([0.5, -0.5, 0.5, 60.0])     # a visible change
    path = save_model(tmp_path / "r", model, cfg)
    without_cfg = tiny_warp()
    without = build_network(without_cfg)
    without.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("refiner.")})
    plain_path = save_model(tmp_path / "p", without, without_cfg)
    img, pts = textured(200), face_points(200)
    target = face_points(64, seed=5)
    for size in (128, 384):
        outs = []
        for p in (path, plain_path):
            r = Reenactor(load_model(p), device="cpu")
            r.set_sources([img], [pts], output_size=size)
            outs.append(r.generate(target).image.astype(int))
        refined, warp = outs
        assert refined.shape == (size, size, 3)
        diff = np.abs(refined - warp).max(-1)
        assert diff.max() > 20                                        # the parts changed
        c = size // 8
        assert diff[:c, :c].max() <= 1 and diff[-c:, -c:].max() <= 1   # the corners did not
