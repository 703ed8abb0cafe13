"""Train the mouth generator on a bank of hard mouth pairs (`python -m train.mouth_train`).

    python -m train.mouth_pairs --cache ~/.cache/caingan/data/s256 --out BANK          # crops
    python -m train.mouth_train fit --bank BANK --val-bank VAL --run RUN               # resumes
    python -m train.mouth_train export --run RUN --out checkpoints/mouth               # ship

Each step draws a batch (a clip at random, then one of its pairs), jitters it (scale, rotation,
shift, mirror; colour gain, brightness and contrast shared by the pair's crops) and cuts the
network's crop from the bank's wider one. Losses for the generator G: hinge adversarial, feature
matching, L1 and VGG16-HED perceptual (relu1_1–relu3_1), all on the composite crop. The
discriminator D is a conditional patch D that sees only the mouth: real samples are the true
interior pasted into the *same* warped surroundings as the fake ones, so warp artefacts outside
the mask tell it nothing. D gets a lazy R1 penalty on real samples (on its mean patch logit: on
the patches' sum it held D at chance for hundreds of steps); G an EMA copy (the one that
ships). The run folder keeps safetensors + JSON training states (train.state) every few minutes
and a losses.jsonl; `fit` on the same folder resumes exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from caingan.errors import CainGANError
from caingan.nn.blocks import FeatureStack
from caingan.nn.losses import feature_matching_loss, hinge_d_loss, hinge_g_loss
from caingan.nn.mouth_generator import MouthConfig, MouthGenerator, contour_lines, interior_mask
from train.mouth_pairs import BANK_MARGIN, read_bank_file
from train.state import latest_valid, prune, save_state

KIND_EXPORT = "caingan-mouth-generator"


@dataclass
class MouthTrainConfig:
    bank: str = ""
    val_bank: str = ""
    run: str = ""
    batch: int = 8
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.99)
    l1: float = 10.0
    vgg: float = 1.0
    fm: float = 2.0
    adv: float = 1.0
    r1: float = 1.0            # γ on D's per-sample mean patch logit; every r1_every steps, scaled by it
    r1_every: int = 4
    ema: float = 0.999
    jitter_scale: float = 0.1
    jitter_rotate: float = 6.0  # degrees
    jitter_shift: float = 0.06  # of the crop's side
    jitter_colour: float = 0.1
    bf16: bool = True
    save_minutes: float = 4.0
    keep_last: int = 2
    refresh_steps: int = 500   # rescan the bank for new clips
    val_every: int = 250
    seed: int = 0
    model: dict = field(default_factory=lambda: MouthConfig().to_dict())


class MouthDiscriminator(FeatureStack):
    """Conditional patch D over [composite crop (3), target lip contours (2), mask (1)]; returns
    its intermediate features, the last being (B,1,h,w) logits."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = (width, width * 2, width * 4, width * 4)
        cin = 6
        layers = []
        for i, c in enumerate(w):
            layers.append(nn.Sequential(nn.Conv2d(cin, c, 4, 2 if i < 3 else 1, 1), nn.LeakyReLU(0.2)))
            cin = c
        layers.append(nn.Conv2d(cin, 1, 3, 1, 1))
        self.layers = nn.ModuleList(layers)


class Bank:
    """All bank files of a folder in memory, uint8; `refresh` adds files written since."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise CainGANError(f"mouth bank {self.folder} not found; build it with "
                               f"`python -m train.mouth_pairs --cache CACHE --out {self.folder}`")
        self.files: list[str] = []
        self.clips: list[dict[str, np.ndarray]] = []
        self.refresh()

    def refresh(self) -> int:
        new = 0
        for f in sorted(self.folder.glob("*.npz")):
            if f.name in self.files:
                continue
            arrays = read_bank_file(f)
            self.files.append(f.name)
            arrays["name"] = f.name
            if len(arrays["warp"]):
                self.clips.append(arrays)
                new += 1
        return new

    @property
    def pairs(self) -> int:
        return sum(len(c["warp"]) for c in self.clips)

    def check(self, cfg: MouthConfig) -> None:
        """CainGANError unless every file was cut for this network's frame (crop and half)."""
        for c in self.clips:
            meta, name = c["meta"], c["name"]
            if meta.get("crop") != cfg.crop or abs(meta.get("half", 0) - cfg.half * BANK_MARGIN) > 1e-6:
                raise CainGANError(f"mouth bank file {self.folder / name} was cut for crop "
                                   f"{meta.get('crop')} / half {meta.get('half')}, not this "
                                   f"network's {cfg.crop} / {cfg.half * BANK_MARGIN:g}; build a "
                                   f"bank with the same MouthConfig")

    def draw(self, rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
        if not self.clips:
            raise CainGANError(f"mouth bank {self.folder} holds no pairs yet")
        cs = rng.integers(0, len(self.clips), n)
        return [(int(c), int(rng.integers(0, len(self.clips[c]["warp"])))) for c in cs]


def _u8(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def make_batch(bank: Bank, picks: list[tuple[int, int]], cfg: MouthConfig, tc: MouthTrainConfig,
               rng: np.random.Generator | None) -> dict[str, torch.Tensor]:
    """Crops of the picked pairs at cfg.crop, jittered when rng is given (else the centre crop
    at the network's scale), with their contours and mask."""
    get = lambda k: np.stack([bank.clips[c][k][i] for c, i in picks])  # noqa: E731
    warp, source, truth = _u8(get("warp")), _u8(get("source")), _u8(get("truth"))
    tp, sp = torch.from_numpy(get("target_points")), torch.from_numpy(get("source_points"))
    b, big, side = len(picks), warp.shape[-1], cfg.crop

    def theta(jitter: bool) -> torch.Tensor:
        """(B,2,3) output crop → bank crop, in normalised coordinates."""
        s = np.full(b, 1 / BANK_MARGIN)
        rot, sh, flip = np.zeros(b), np.zeros((b, 2)), np.ones(b)
        if jitter:
            s = s * np.exp(rng.uniform(-tc.jitter_scale, tc.jitter_scale, b))
            rot = np.deg2rad(rng.uniform(-tc.jitter_rotate, tc.jitter_rotate, b))
            sh = rng.uniform(-tc.jitter_shift, tc.jitter_shift, (b, 2)) * 2
            flip = np.where(rng.random(b) < 0.5, -1.0, 1.0)
        c, si = np.cos(rot) * s, np.sin(rot) * s
        t = np.stack([np.stack([c * flip, -si, sh[:, 0]], -1), np.stack([si * flip, c, sh[:, 1]], -1)], 1)
        return torch.from_numpy(t).float()

    def apply(img, pts, th):
        grid = F.affine_grid(th, [b, 3, side, side], align_corners=False)
        out = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
        u = (2 * pts + 1) / big - 1
        a, t = th[:, :, :2], th[:, :, 2]
        q = torch.linalg.solve(a, (u - t[:, None]).transpose(1, 2)).transpose(1, 2)
        return out, ((q + 1) * side - 1) / 2

    jitter = rng is not None
    th_t = theta(jitter)
    th_s = theta(jitter)
    warp, tpc = apply(warp, tp, th_t)
    truth, _ = apply(truth, tp, th_t)
    source, spc = apply(source, sp, th_s)
    if jitter:
        gain = 1 + torch.from_numpy(rng.uniform(-tc.jitter_colour, tc.jitter_colour, (b, 3, 1, 1))).float()
        contrast = 1 + torch.from_numpy(rng.uniform(-2, 2, (b, 1, 1, 1)) * tc.jitter_colour).float()
        bright = torch.from_numpy(rng.uniform(-1, 1, (b, 1, 1, 1)) * tc.jitter_colour).float()
        warp, truth, source = ((((x + 1) / 2 * gain - 0.5) * contrast + 0.5 + bright).clamp(0, 1) * 2 - 1
                               for x in (warp, truth, source))
    lines = contour_lines(tpc, spc, side)
    mask = interior_mask(tpc, side, cfg.grow, cfg.feather)
    return {"warp": warp, "source": source, "truth": truth, "lines": lines, "mask": mask}


def perceptual_net() -> nn.Module:
    """VGG16-HED up to relu3_1 (the mouth crop is small; deeper taps see the whole crop as one
    patch), frozen."""
    from caingan.nn.vgg import frozen, load_vgg16_hed

    net = load_vgg16_hed()
    net.taps = net.taps[:3]
    return frozen(net)


class Trainer:
    def __init__(self, tc: MouthTrainConfig, bank: Bank | None = None, vgg: nn.Module | None = None):
        self.tc = tc
        self.cfg = MouthConfig.from_dict(tc.model)
        torch.manual_seed(tc.seed)
        self.g = MouthGenerator(self.cfg)
        self.g_ema = MouthGenerator(self.cfg)
        self.g_ema.load_state_dict(self.g.state_dict())
        self.g_ema.requires_grad_(False)
        self.d = MouthDiscriminator()
        self.opt_g = torch.optim.Adam(self.g.parameters(), tc.lr_g, betas=tuple(tc.betas))
        self.opt_d = torch.optim.Adam(self.d.parameters(), tc.lr_d, betas=tuple(tc.betas))
        self.vgg = vgg
        self.bank = bank if bank is not None else Bank(tc.bank)
        self.bank.check(self.cfg)
        self.rng = np.random.default_rng(tc.seed)
        self.step = 0
        self.history: list[dict] = []

    # -- state ---------------------------------------------------------------------------------
    def modules(self):
        return {"g": self.g, "g_ema": self.g_ema, "d": self.d}

    def optimizers(self):
        return {"g": self.opt_g, "d": self.opt_d}

    def save(self) -> Path:
        counters = {"step": self.step, "rng": self.rng.bit_generator.state,
                    "bank_files": len(self.bank.files), "pairs": self.bank.pairs}
        path = save_state(Path(self.tc.run), self.step, self.modules(), self.optimizers(), counters,
                          {**asdict(self.tc), "kind": "mouth"})
        prune(Path(self.tc.run), self.tc.keep_last)
        return path

    def resume(self) -> bool:
        found = latest_valid(Path(self.tc.run), self.modules(), self.optimizers())
        if found is None:
            return False
        _, meta = found
        self.step = int(meta["counters"]["step"])
        self.rng.bit_generator.state = meta["counters"]["rng"]
        return True

    # -- one step ------------------------------------------------------------------------------
    def _d_in(self, crop, x):
        return torch.cat([crop, x["lines"][:, :2], x["mask"]], 1)

    def train_step(self, x: dict[str, torch.Tensor]) -> dict[str, float]:
        tc = self.tc
        amp = torch.autocast("cpu", torch.bfloat16, enabled=tc.bf16)
        m = x["mask"]
        real = x["warp"] * (1 - m) + x["truth"] * m
        with amp:
            fake = self.g(x["warp"], x["source"], x["lines"], m).float()
        # D
        self.d.requires_grad_(True)
        with amp:
            d_real = self.d(self._d_in(real, x))
            d_fake = self.d(self._d_in(fake.detach(), x))
        loss_d = hinge_d_loss([[f.float() for f in d_real]], [[f.float() for f in d_fake]])
        r1 = torch.zeros(())
        if tc.r1 > 0 and self.step % tc.r1_every == 0:
            real_in = self._d_in(real, x).detach().requires_grad_(True)
            out = self.d(real_in)[-1].mean((1, 2, 3))     # one score per sample: the patches' mean
            (grad,) = torch.autograd.grad(out.sum(), real_in, create_graph=True)
            r1 = grad[:, :3].pow(2).flatten(1).sum(1).mean()
        self.opt_d.zero_grad(set_to_none=True)
        (loss_d + 0.5 * tc.r1 * tc.r1_every * r1).backward()
        self.opt_d.step()
        # G
        self.d.requires_grad_(False)
        with amp:
            d_fake = self.d(self._d_in(fake, x))
        d_fake = [f.float() for f in d_fake]
        adv = hinge_g_loss([d_fake])
        fm = feature_matching_loss([[f.float().detach() for f in d_real]], [d_fake])
        l1 = ((fake - real).abs() * m).sum() / (3 * m.sum()).clamp_min(1.0)
        vgg = torch.zeros(())
        if self.vgg is not None and tc.vgg > 0:
            with amp:
                fr, rr = self.vgg(fake), self.vgg(real)
            vgg = sum(w * F.l1_loss(a.float(), b.float().detach())
                      for w, a, b in zip((1 / 32, 1 / 16, 1 / 8), fr, rr))
        loss_g = tc.adv * adv + tc.fm * fm + tc.l1 * l1 + tc.vgg * vgg
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        decay = min(tc.ema, (1 + self.step) / (10 + self.step))   # the copy catches up early on
        with torch.no_grad():
            for pe, p in zip(self.g_ema.parameters(), self.g.parameters()):
                pe.lerp_(p, 1 - decay)
        self.step += 1
        out = {"d": loss_d, "r1": r1, "adv": adv, "fm": fm, "l1": l1, "vgg": vgg, "g": loss_g}
        return {k: float(v.detach()) for k, v in out.items()}

    def batch(self) -> dict[str, torch.Tensor]:
        return make_batch(self.bank, self.bank.draw(self.rng, self.tc.batch), self.cfg, self.tc, self.rng)


def mask_l1(g: MouthGenerator, bank: Bank, cfg: MouthConfig, tc: MouthTrainConfig,
            n: int = 256, seed: int = 1) -> dict[str, float]:
    """Mean |·| (0–255) inside the mask of G's crop and of the warp's against the truth, on n
    fixed pairs of `bank`, unjittered."""
    rng = np.random.default_rng(seed)
    picks = bank.draw(rng, n)
    tot = {"gen": 0.0, "warp": 0.0}
    den = 0.0
    for i in range(0, n, 32):
        x = make_batch(bank, picks[i:i + 32], cfg, tc, None)
        with torch.no_grad():
            out = g(x["warp"], x["source"], x["lines"], x["mask"])
        m = x["mask"]
        tot["gen"] += float(((out - x["truth"]).abs() * m).sum())
        tot["warp"] += float(((x["warp"] - x["truth"]).abs() * m).sum())
        den += 3 * float(m.sum())
    return {k: v / max(den, 1.0) * 127.5 for k, v in tot.items()}


def fit(tc: MouthTrainConfig, steps: int, threads: int = 1, log=print) -> Trainer:
    torch.set_num_threads(threads)
    run = Path(tc.run).expanduser()
    run.mkdir(parents=True, exist_ok=True)
    tr = Trainer(tc, vgg=perceptual_net() if tc.vgg > 0 else None)
    if tr.resume():
        log(f"resumed at step {tr.step} from {run}")
    val = Bank(tc.val_bank) if tc.val_bank else None
    log(f"bank: {len(tr.bank.clips)} clips, {tr.bank.pairs} pairs; G {sum(p.numel() for p in tr.g.parameters()):,} "
        f"parameters, D {sum(p.numel() for p in tr.d.parameters()):,}")
    last_save, t0, acc = time.time(), time.time(), []
    with open(run / "losses.jsonl", "a") as flog:
        while tr.step < steps:
            if tr.step % tc.refresh_steps == 0 and tr.step and tr.bank.refresh():
                tr.bank.check(tr.cfg)
                log(f"bank grew: {len(tr.bank.clips)} clips, {tr.bank.pairs} pairs")
            acc.append(tr.train_step(tr.batch()))
            if tr.step % 50 == 0:
                mean = {k: round(float(np.mean([a[k] for a in acc])), 4) for k in acc[0]}
                acc = []
                rec = {"step": tr.step, "time": round(time.time() - t0, 1), **mean}
                if val is not None and tr.step % tc.val_every == 0:
                    rec["val_l1"] = {k: round(v, 2) for k, v in mask_l1(tr.g_ema, val, tr.cfg, tc).items()}
                flog.write(json.dumps(rec) + "\n")
                flog.flush()
                log(json.dumps(rec))
            if time.time() - last_save > 60 * tc.save_minutes:
                tr.save()
                last_save = time.time()
    tr.save()
    return tr


def export(run: Path, out: Path) -> Path:
    """The newest state's EMA generator (fp16) + its config and a small training summary."""
    from caingan.nn.checkpoint import load_checkpoint, save_checkpoint
    from train.state import KIND, list_checkpoints

    ckpts = list_checkpoints(run)
    if not ckpts:
        raise CainGANError(f"{run} holds no training state to export")
    step, path = ckpts[-1]
    tensors, meta = load_checkpoint(path, kind=KIND)
    weights = {k[len("g_ema."):]: v.half() for k, v in tensors.items() if k.startswith("g_ema.")}
    out.mkdir(parents=True, exist_ok=True)
    cfg = meta["config"]
    save_checkpoint(out / "mouth_generator.safetensors", weights,
                    {"kind": KIND_EXPORT, "model": cfg["model"], "step": step})
    tail = []
    losses = run / "losses.jsonl"
    if losses.is_file():
        tail = [json.loads(line) for line in losses.read_text().splitlines()[-20:] if line.strip()]
    (out / "training.json").write_text(json.dumps(
        {"step": step, "counters": {k: v for k, v in meta["counters"].items() if k != "rng"},
         "config": cfg, "recent_losses": tail}, indent=1))
    return out / "mouth_generator.safetensors"


def load_generator(path: str | Path) -> MouthGenerator:
    """An exported mouth generator (fp32, eval mode)."""
    from caingan.nn.checkpoint import load_checkpoint

    tensors, meta = load_checkpoint(path, kind=KIND_EXPORT)
    g = MouthGenerator(MouthConfig.from_dict(meta["model"]))
    g.load_state_dict({k: v.float() for k, v in tensors.items()})
    return g.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.mouth_train", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--bank", required=True)
    f.add_argument("--val-bank", default="")
    f.add_argument("--run", required=True)
    f.add_argument("--steps", type=int, default=1_000_000)
    f.add_argument("--threads", type=int, default=1)
    f.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any MouthTrainConfig field (JSON value), e.g. batch=8, vgg=0")
    e = sub.add_parser("export")
    e.add_argument("--run", required=True)
    e.add_argument("--out", required=True)
    a = p.parse_args(argv)
    try:
        if a.cmd == "export":
            print(export(Path(a.run).expanduser(), Path(a.out)))
            return 0
        tc = MouthTrainConfig(bank=a.bank, val_bank=a.val_bank, run=a.run)
        for kv in a.set:
            k, _, v = kv.partition("=")
            if k not in MouthTrainConfig.__dataclass_fields__:
                raise CainGANError(f"--set {kv}: no field {k!r} in MouthTrainConfig")
            setattr(tc, k, json.loads(v))
        fit(tc, a.steps, a.threads)
        return 0
    except CainGANError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from caingan.cli import interrupted
        return interrupted("mouth_train", "run the same command again to resume")


if __name__ == "__main__":
    sys.exit(main())
