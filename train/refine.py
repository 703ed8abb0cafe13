"""Train the part refiner (caingan.nn.part_refiner) on top of a frozen warp-guided model.

The refiner only sees crops of the mouth and the eyes, so it trains on a *bank* of crops rendered
once by the frozen model (`bank`), many steps per CPU-minute (`fit`), and is then joined to the
model's weights into one checkpoint (`bundle`):

    python -m train.refine bank --cache ~/.cache/caingan/data/s256 --base assets/caingan-warp \\
        --pairs 4000 --seed 0 --out runs/refine/bank0.npz
    python -m train.refine fit --bank runs/refine/bank0.npz runs/refine/bank1.npz --run runs/refine
    python -m train.refine bundle --base assets/caingan-warp --run runs/refine --out assets/caingan-warp

`--set FIELD=VALUE` renders the base with other render settings (caingan.config.RenderSettings).

Objective per part crop (the crop as pasted, i.e. faded at its edges): L1 + multi-scale
perceptual (VGG16-HED) + hinge GAN with feature matching from a patch discriminator that sees the
crop beside the target's contours, both sides through DiffAugment (translation, colour; Zhao et
al. 2020) since the bank is small. The identity groups `--holdout-groups` keeps out (the
evaluator's diagnostic set) never enter the bank.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from caingan.config import ModelConfig, RenderSettings, apply_overrides
from caingan.face.landmark_file import rescale_points
from caingan.face.landmark_image import landmark_images
from caingan.nn.checkpoint import (drop_retired, load_checkpoint, load_module_state, model_config,
                                   read_meta, render_settings, save_checkpoint, save_model)
from caingan.nn.discriminator import MultiscaleDiscriminator
from caingan.nn.losses import (PerceptualLoss, feature_matching_loss, hinge_d_loss, hinge_g_loss,
                               oracle_mask_loss)
from caingan.nn.model import build_network
from caingan.nn.part_refiner import PartCrops, PartRefiner, fade_window, gather_crops
from train.dataset import ClipDataset
from train.state import latest_valid, list_checkpoints, prune, save_state

PARTS = PartRefiner.PARTS
REFINER_KIND = "caingan-part-refiner"


# -- the frozen model --------------------------------------------------------------------------

def base_config(base: str, overrides: list[str]) -> tuple[ModelConfig, RenderSettings]:
    """The base's architecture (without a refiner) and its render settings with `overrides`."""
    meta = read_meta(base)
    cfg = ModelConfig.from_dict({**model_config(meta, base).to_dict(), "part_refiner": False})
    settings = render_settings(meta, cfg, base)
    return cfg, RenderSettings.from_dict(apply_overrides(RenderSettings, settings.to_dict(), overrides))


def load_base(base: str, overrides: list[str]):
    cfg, settings = base_config(base, overrides)
    model = build_network(cfg)
    tensors, _ = load_checkpoint(base)
    tensors = drop_retired({k: v for k, v in tensors.items() if not k.startswith("refiner.")})
    load_module_state(model, tensors, base)
    return model.eval(), cfg, settings


# -- bank ------------------------------------------------------------------------------------

def _u8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()


def build_bank(a) -> None:
    torch.set_num_threads(a.threads)
    model, cfg, settings = load_base(a.base, a.set)
    ds = ClipDataset(a.cache, "train", k=1)
    groups = sorted({c["identity_group"] for c in ds.clips})
    held = set(groups[-a.holdout_groups:]) if a.holdout_groups else set()
    ds = ds.subset(lambda c: c["identity_group"] not in held)
    rng = np.random.default_rng(a.seed)
    frames = np.array([c["frames"] for c in ds.clips], np.float64)
    prob = np.sqrt(frames) / np.sqrt(frames).sum()    # long clips more often, not overwhelmingly
    out: dict[str, list[np.ndarray]] = {}
    size = cfg.image_size
    for _ in tqdm(range(0, a.pairs, a.batch), desc="bank"):
        items = [ds.sample(int(rng.choice(len(ds), p=prob)), rng) for _ in range(a.batch)]
        src = torch.stack([it["sources"] for it in items])                  # (B,1,3,R,R)
        tgt = torch.stack([it["target"] for it in items])
        sp = torch.stack([it["source_points"] for it in items])
        tp = torch.stack([it["target_points"] for it in items])
        b, k, _, res, _ = src.shape
        s_lms = landmark_images(rescale_points(sp.reshape(b * k, 68, 2).numpy(), res, size), size)
        t_lm = landmark_images(rescale_points(tp.numpy(), res, size), size)
        with torch.no_grad():
            image = model.render(src, s_lms.reshape(b, k, 3, size, size), t_lm, sp, tp,
                                 settings.replace(output_size=res)).image
        for part in PARTS:
            c = gather_crops(image, tp, src[:, 0], sp[:, 0], part)
            t = gather_crops(tgt, tp, src[:, 0], sp[:, 0], part)
            out.setdefault(f"{part}.image", []).append(_u8(c.image))
            out.setdefault(f"{part}.source", []).append(_u8(c.source))
            out.setdefault(f"{part}.target", []).append(_u8(t.image))
            out.setdefault(f"{part}.lines", []).append((c.lines.clamp(0, 1) * 255).round().byte().numpy())
            out.setdefault(f"{part}.ok", []).append(c.ok.numpy())
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(a.out, **{k: np.concatenate(v)[: a.pairs] for k, v in out.items()},
             meta=json.dumps({"base": str(a.base), "config": cfg.to_dict(),
                              "render": settings.to_dict(), "cache": str(a.cache),
                              "held_out_groups": sorted(held), "pairs": a.pairs}))
    print(f"wrote {a.out}: {a.pairs} pairs")


# -- fit -------------------------------------------------------------------------------------

class Bank:
    """One or more bank files rendered by the same base model, concatenated."""

    def __init__(self, paths: list[str]):
        parts: dict[str, list[np.ndarray]] = {}
        self.meta = None
        for path in paths:
            with np.load(path) as z:
                meta = json.loads(str(z["meta"]))
                if self.meta is not None and meta["config"] != self.meta["config"]:
                    raise SystemExit(f"{path} was rendered by another model than {paths[0]}")
                self.meta = meta
                for k in z.files:
                    if k != "meta":
                        parts.setdefault(k, []).append(z[k])
        self.arrays = {k: torch.from_numpy(np.concatenate(v)) for k, v in parts.items()}
        self.n = len(self.arrays["mouth.ok"])

    def batch(self, part: str, idx: np.ndarray, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Float crops of one part with the same colour jitter on all of a pair's crops, and a
        random mirror for the mouth (the eyes' frames are mirrored already)."""
        i = torch.from_numpy(idx)
        f = lambda name: self.arrays[f"{part}.{name}"][i].permute(0, 3, 1, 2).float() / 127.5 - 1  # noqa: E731
        x = {"image": f("image"), "source": f("source"), "target": f("target"),
             "lines": self.arrays[f"{part}.lines"][i].float() / 255,
             "ok": self.arrays[f"{part}.ok"][i]}
        b = len(idx)
        gain = 1 + 0.3 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
        bias = 0.2 * (torch.rand(b, 3, 1, 1, generator=gen) - 0.5)
        for key in ("image", "source", "target"):
            x[key] = (x[key] * gain + bias).clamp(-1, 1)
        if part == "mouth":
            flip = torch.rand(b, generator=gen) < 0.5
            for key in ("image", "source", "target", "lines"):
                x[key][flip] = x[key][flip].flip(-1)
        return x


def diff_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """DiffAugment's colour and translation (1/8 of the side), the same for all channels."""
    b, _, h, w = x.shape
    rgb = x[:, :3]
    rgb = rgb + (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    mean = rgb.mean(1, keepdim=True)
    rgb = (rgb - mean) * (torch.rand(b, 1, 1, 1, generator=gen) * 2) + mean
    mean = rgb.mean((1, 2, 3), keepdim=True)
    rgb = (rgb - mean) * (torch.rand(b, 1, 1, 1, generator=gen) + 0.5) + mean
    x = torch.cat([rgb, x[:, 3:]], 1)
    s = max(1, h // 8)
    pad = F.pad(x, (s, s, s, s), mode="replicate")
    dx = torch.randint(0, 2 * s + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * s + 1, (b,), generator=gen)
    return torch.stack([pad[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


def fit(a) -> None:
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    bank = Bank(a.bank)
    init = None
    if a.init and not list_checkpoints(Path(a.run)):
        tensors, meta = load_checkpoint(a.init, kind=REFINER_KIND)
        a.width = float(meta["width"])
        init = (tensors, meta)
    refiner = PartRefiner(a.width)
    if init is not None:
        load_module_state(refiner, init[0], a.init)
        print(f"started from {a.init} (step {init[1].get('step')} of {init[1].get('run')})")
    dcfg = ModelConfig(width=0.5)
    discs = torch.nn.ModuleDict({"mouth": MultiscaleDiscriminator(3 + 2, dcfg, 2, 3),
                                 "eye": MultiscaleDiscriminator(3 + 1, dcfg, 1, 3)})
    opt_g = torch.optim.Adam(refiner.parameters(), lr=a.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discs.parameters(), lr=a.lr, betas=(0.5, 0.999))
    vgg = PerceptualLoss(a.perceptual) if a.lambda_vgg > 0 else None
    run = Path(a.run)
    run.mkdir(parents=True, exist_ok=True)
    step = 0
    found = latest_valid(run, {"refiner": refiner, "disc": discs}, {"g": opt_g, "d": opt_d})
    if found:
        step = int(found[1]["counters"]["step"])
        print(f"resumed {found[0]} at step {step}")
    gen = torch.Generator().manual_seed(a.seed + step)
    rng = np.random.default_rng(a.seed + step)
    log = (run / "log.jsonl").open("a")
    t0 = time.time()
    config = {k: v for k, v in vars(a).items() if k != "func"}
    while step < a.steps:
        logs: dict[str, float] = {}
        total_g = torch.zeros(())
        fakes, reals = {}, {}
        for part in PARTS:
            x = bank.batch(part, rng.integers(0, bank.n, a.batch), gen)
            crops = PartCrops(x["image"], x["source"], x["lines"], torch.zeros(a.batch, 2, 3), x["ok"])
            res = refiner.refine_part(crops, part)
            win = fade_window(res.output.shape[-1], res.output.device, res.output.dtype)
            pasted = x["image"] + win * (res.output - x["image"])
            half = x["lines"].shape[1] // 2
            fakes[part] = torch.cat([pasted, x["lines"][:, :half] * 2 - 1], 1)
            reals[part] = torch.cat([x["target"], x["lines"][:, :half] * 2 - 1], 1)
            l1 = F.l1_loss(pasted, x["target"])
            logs[f"{part}.l1"] = l1.item()
            logs[f"{part}.l1_in"] = float(F.l1_loss(x["image"], x["target"]))
            logs[f"{part}.alpha"] = res.alpha.mean().item()
            if a.gate == "oracle":
                # The change learns on its own (as if α = 1); α learns to use it only where it
                # beats the warp by a margin, detail included (a blur must not win on L1 alone).
                full = x["image"] + win * res.delta
                recon = full
                logit = torch.logit(res.alpha.clamp(1e-4, 1 - 1e-4))
                gate = oracle_mask_loss(-logit, x["image"], full.detach(), x["target"],
                                        x["ok"].float()[:, None, None, None].expand_as(logit),
                                        margin=a.gate_margin, sharpness=a.gate_sharpness)
                loss = a.lambda_l1 * F.l1_loss(full, x["target"]) + gate
                logs[f"{part}.gate"] = gate.item()
            else:
                recon = pasted
                loss = a.lambda_l1 * l1
            if vgg is not None:
                p = vgg(recon, x["target"])
                loss = loss + a.lambda_vgg * p
                logs[f"{part}.vgg"] = p.item()
            total_g = total_g + (loss if part == "mouth" else 0.5 * loss)
        # Discriminators: eyes share one (both frames look like a right eye).
        if a.lambda_gan > 0:
            eye_fake = torch.cat([fakes["right_eye"], fakes["left_eye"]])
            eye_real = torch.cat([reals["right_eye"], reals["left_eye"]])
            pairs = {"mouth": (fakes["mouth"], reals["mouth"]), "eye": (eye_fake, eye_real)}
            opt_d.zero_grad(set_to_none=True)
            d_loss = torch.zeros(())
            for name, (fake, real) in pairs.items():
                d = discs[name]
                d_loss = d_loss + hinge_d_loss(d(diff_augment(real, gen)), d(diff_augment(fake.detach(), gen)))
            d_loss.backward()
            opt_d.step()
            logs["d"] = d_loss.item()
            for name, (fake, real) in pairs.items():
                d = discs[name]
                seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
                f_out = d(diff_augment(fake, torch.Generator().manual_seed(seed)))
                with torch.no_grad():
                    r_out = d(diff_augment(real, torch.Generator().manual_seed(seed)))
                g_adv = hinge_g_loss(f_out)
                fm = feature_matching_loss(r_out, f_out)
                total_g = total_g + a.lambda_gan * g_adv + a.lambda_fm * fm
                logs[f"{name}.gan"] = g_adv.item()
                logs[f"{name}.fm"] = fm.item()
        opt_g.zero_grad(set_to_none=True)
        total_g.backward()
        opt_g.step()
        step += 1
        if step % a.log_every == 0:
            logs.update(step=step, seconds=round(time.time() - t0, 1))
            log.write(json.dumps(logs) + "\n")
            log.flush()
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items()),
                  flush=True)
        if step % a.save_every == 0 or step == a.steps:
            save_state(run, step, {"refiner": refiner, "disc": discs}, {"g": opt_g, "d": opt_d},
                       {"step": step}, config)
            prune(run, 2)


# -- bundle ----------------------------------------------------------------------------------

def latest_refiner(run: str | Path) -> tuple[PartRefiner, dict]:
    """The newest usable refiner of a run (its width from the run's config) and its state's meta."""
    states = list_checkpoints(Path(run))
    if not states:
        raise SystemExit(f"no refiner checkpoint in {run}")
    refiner = PartRefiner(float(read_meta(states[-1][1]).get("config", {}).get("width", 1.0)))
    found = latest_valid(Path(run), {"refiner": refiner}, {})
    if not found:
        raise SystemExit(f"no usable refiner checkpoint in {run}")
    return refiner, found[1]


def bundle(a) -> None:
    model, cfg, settings = load_base(a.base, a.set)
    refiner, meta = latest_refiner(a.run)
    width = refiner.width
    cfg = ModelConfig.from_dict({**cfg.to_dict(), "part_refiner": True, "refiner_width": width})
    full = build_network(cfg)
    full.load_state_dict({**model.state_dict(),
                          **{f"refiner.{k}": v for k, v in refiner.state_dict().items()}})
    extra = dict(read_meta(a.base).get("extra") or {})
    extra["part_refiner"] = {"run": str(a.run), "step": int(meta["counters"]["step"]),
                             "train_config": meta.get("config", {})}
    path = save_model(a.out, full, cfg, extra, settings)
    print(f"wrote {path}")


def export(a) -> None:
    """The refiner's weights alone (a warm start for `fit --init`, ~2 MB at width 0.5)."""
    refiner, meta = latest_refiner(a.run)
    step = int(meta["counters"]["step"])
    out = save_checkpoint(a.out, refiner.state_dict(),
                          {"kind": REFINER_KIND, "width": refiner.width, "step": step,
                           "run": str(a.run), "train_config": meta.get("config", {})})
    print(f"wrote {out} (step {step})")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.refine", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(required=True)
    b = sub.add_parser("bank", help="render crops of the frozen model's output")
    b.add_argument("--cache", required=True)
    b.add_argument("--base", required=True, help="the warp-guided model checkpoint")
    b.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="render the base with this render setting (e.g. mouth_gap=stretch)")
    b.add_argument("--pairs", type=int, default=12000)
    b.add_argument("--batch", type=int, default=16)
    b.add_argument("--holdout-groups", type=int, default=6)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--out", required=True)
    b.set_defaults(func=build_bank)
    f = sub.add_parser("fit", help="train the refiner on a bank (resumes from --run)")
    f.add_argument("--bank", required=True, nargs="+", help="bank file(s) of one base model")
    f.add_argument("--run", required=True)
    f.add_argument("--steps", type=int, default=4000)
    f.add_argument("--batch", type=int, default=16)
    f.add_argument("--lr", type=float, default=2e-4)
    f.add_argument("--lambda-l1", type=float, default=10.0)
    f.add_argument("--lambda-vgg", type=float, default=10.0)
    f.add_argument("--lambda-gan", type=float, default=1.0)
    f.add_argument("--lambda-fm", type=float, default=10.0)
    f.add_argument("--perceptual", default="vgg16_hed")
    f.add_argument("--width", type=float, default=1.0, help="the refiner's channel multiplier")
    f.add_argument("--gate", choices=["learned", "oracle"], default="learned",
                   help="learned: α trained through the blend; oracle: the change trained alone "
                        "and α against where it beats the warp (caingan.nn.losses.oracle_mask_loss)")
    f.add_argument("--init", help="start a new run from refiner weights written by `export`")
    f.add_argument("--gate-margin", type=float, default=0.02)
    f.add_argument("--gate-sharpness", type=float, default=1.0)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--threads", type=int, default=1)
    f.add_argument("--log-every", type=int, default=20)
    f.add_argument("--save-every", type=int, default=200)
    f.set_defaults(func=fit)
    u = sub.add_parser("bundle", help="join the base weights and the refiner into one model file")
    u.add_argument("--base", required=True)
    u.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE")
    u.add_argument("--run", required=True)
    u.add_argument("--out", required=True)
    u.set_defaults(func=bundle)
    e = sub.add_parser("export", help="the refiner's weights alone, for `fit --init`")
    e.add_argument("--run", required=True)
    e.add_argument("--out", required=True)
    e.set_defaults(func=export)
    a = p.parse_args(argv)
    a.func(a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
