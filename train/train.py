"""CainGAN training (paper eqs. 2–5): resumable, logged, single process or torchrun DDP.

Per G step: `d_steps` discriminator updates, each on a fresh batch with a detached fake, then one
update of E+G. D_I judges (image, a source of the same person); D_P judges (image, target
landmark image). G+E minimise hinge adversarial + λ_FM(λ_I·FM(D_I) + λ_P·FM(D_P)) + λ_VGG·perceptual,
with λ_I grown linearly over the first epochs.

    python -m train.train --cache ~/.cache/caingan/data/s128 --run-dir runs/small
    torchrun --nproc_per_node 4 -m train.train --config runs/paper/config.json

Killed at any moment, the same command resumes from the newest complete checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from caingan.cli import EXIT_INTERRUPTED, interrupted
from caingan.nn.checkpoint import save_model
from caingan.device import pick_device
from caingan.nn.discriminator import MultiscaleDiscriminator
from caingan.errors import CainGANError
from caingan.media.images import save_image
from caingan.face.landmark_file import rescale_points
from caingan.face.landmark_image import landmark_images
from caingan.nn.part_mask import region_mask
from caingan.nn.face_id import FaceDescriptor
from caingan.nn.warp_mix import area_down
from caingan.nn.warp_model import WarpCainGAN
from caingan.nn.losses import (PerceptualLoss, feature_matching_loss, hinge_d_loss, hinge_g_loss,
                               oracle_mask_loss)

from . import state as st
from .bundle import warm_start
from .config import TrainConfig, from_command_line
from .data import EpochSampler, build_datasets
from .distributed import DistInfo, all_mean, any_true, barrier, cleanup, init_distributed
from .stop_signals import ignore_stop_signals, stop_signals_blocked
from .models import build_generator
from .visuals import sample_grid

EXIT_NAN = 3


class NonFiniteLoss(CainGANError):
    """A loss became NaN/inf: the run stops and keeps its last good checkpoint."""


def split_outputs(outs: list[list[torch.Tensor]]) -> tuple[list, list]:
    """D was run on cat([real, fake]); split every feature map back into the two halves."""
    real, fake = [], []
    for scale in outs:
        real.append([f.chunk(2, dim=0)[0] for f in scale])
        fake.append([f.chunk(2, dim=0)[1] for f in scale])
    return real, fake


def region_l1(err: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean of a (B,C,H,W) absolute error over the pixels of a (B,1,H,W) region mask."""
    return (err * region).sum() / (region.sum() * err.shape[1]).clamp_min(1.0)


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    amp = cfg.amp
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "none"
    return {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


class Trainer:
    def __init__(self, cfg: TrainConfig, device: torch.device, dist_info: DistInfo):
        self.cfg = cfg
        self.device = device
        self.dist = dist_info
        self.run_dir = Path(cfg.run_dir)
        torch.manual_seed(cfg.seed + dist_info.rank)
        np.random.seed(cfg.seed + dist_info.rank)

        self.train_set, self.val_set = build_datasets(cfg)
        self.gen = build_generator(cfg).to(device)
        self.warp = isinstance(self.gen, WarpCainGAN)
        mc = cfg.model
        self.d_i = MultiscaleDiscriminator(6, mc).to(device)
        self.d_p = MultiscaleDiscriminator(6, mc).to(device)
        self.perceptual = PerceptualLoss(cfg.perceptual).to(device)
        # Held beside the model, not in it: its weights stay out of every checkpoint.
        self.face_id = FaceDescriptor.load(device) if cfg.lambda_id > 0 else None
        self.opt_g = torch.optim.Adam(self.gen.parameters(), lr=cfg.lr_g, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(list(self.d_i.parameters()) + list(self.d_p.parameters()),
                                      lr=cfg.lr_d, betas=cfg.betas)
        if dist_info.enabled:
            ids = [device.index] if device.type == "cuda" else None
            self.gen_ddp = DDP(self.gen, device_ids=ids)
            self.d_i_ddp = DDP(self.d_i, device_ids=ids)
            self.d_p_ddp = DDP(self.d_p, device_ids=ids)
        else:
            self.gen_ddp, self.d_i_ddp, self.d_p_ddp = self.gen, self.d_i, self.d_p
        self.amp_dtype = autocast_dtype(cfg, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_val = math.inf
        self.stop_requested = False
        self.writer = None
        self.init_from: str | None = None

    # -- state ---------------------------------------------------------------------------
    def modules(self) -> dict[str, torch.nn.Module]:
        return {"gen": self.gen, "d_i": self.d_i, "d_p": self.d_p}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"g": self.opt_g, "d": self.opt_d}

    def counters(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "best_val": None if math.isinf(self.best_val) else self.best_val}

    def resume(self) -> bool:
        found = st.latest_valid(self.run_dir, self.modules(), self.optimizers())
        if found is None:
            return False
        path, meta = found
        c = meta["counters"]
        self.step, self.epoch, self.batch_in_epoch = c["step"], c["epoch"], c["batch_in_epoch"]
        self.best_val = math.inf if c.get("best_val") is None else c["best_val"]
        if self.dist.is_main:
            print(f"resumed from {path} (step {self.step}, epoch {self.epoch})", flush=True)
        return True

    def save(self) -> Path | None:
        if not self.dist.is_main:
            return None
        path = st.save_state(self.run_dir, self.step, self.modules(), self.optimizers(),
                             self.counters(), self.cfg.to_dict())
        extra = {"arch": self.cfg.arch, "k": self.cfg.k, "step": self.step, "epoch": self.epoch,
                 "train_config": self.cfg.to_dict()}
        if self.cfg.arch == "caingan":
            save_model(self.run_dir / "model_latest.safetensors", self.gen, self.cfg.model, extra)
        st.prune(self.run_dir, self.cfg.keep_last)
        return path

    # -- data ----------------------------------------------------------------------------
    def loader(self, epoch: int) -> DataLoader:
        sampler = EpochSampler(self.train_set, self.cfg.samples_per_clip, self.cfg.seed, epoch,
                               rank=self.dist.rank, world_size=self.dist.world_size)
        return DataLoader(self.train_set, batch_size=self.cfg.batch_size, sampler=sampler,
                          num_workers=self.cfg.num_workers, drop_last=True,
                          persistent_workers=False, pin_memory=self.device.type == "cuda",
                          worker_init_fn=ignore_stop_signals)

    def batches(self) -> Iterator[dict[str, torch.Tensor]]:
        """An endless stream of batches that knows where it is, for exact resume."""
        while True:
            loader = self.loader(self.epoch)
            self.batches_per_epoch = max(1, len(loader))
            with stop_signals_blocked():   # workers start ignoring them, race-free
                it = iter(loader)
            for _ in range(self.batch_in_epoch):   # resume mid-epoch: skip what was consumed
                next(it)
            for batch in it:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    def prepare(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Batch → device tensors. Images come at the dataset's size (the warp-guided model's
        output_size); landmark images and the `*_lo` copies the discriminators and the
        perceptual loss see are at the networks' image_size."""
        size = self.cfg.model.image_size
        dev = self.device
        src = batch["sources"].to(dev, non_blocking=True)
        tgt = batch["target"].to(dev, non_blocking=True)
        b, k, _, res, _ = src.shape
        src_pts, tgt_pts = batch["source_points"], batch["target_points"]
        x = {
            "sources": src,
            "target": tgt,
            "source_points": src_pts.to(dev),
            "target_points": tgt_pts.to(dev),
            "source_lms": landmark_images(rescale_points(src_pts.reshape(b * k, 68, 2).numpy(), res, size),
                                          size).reshape(b, k, 3, size, size).to(dev),
            "target_lm": landmark_images(rescale_points(tgt_pts.numpy(), res, size), size).to(dev),
            "target_lo": area_down(tgt, size),
            "sources_lo": area_down(src.flatten(0, 1), size).unflatten(0, (b, k)),
        }
        if self.cfg.lambda_region > 0:
            masks = np.stack([region_mask(p, res) for p in tgt_pts.numpy()])
            x["region"] = torch.from_numpy(masks).unsqueeze(1).to(dev)
        return x

    def render(self, gen: torch.nn.Module, x: dict[str, torch.Tensor], full: bool = False):
        """(image at the dataset's size, weights); the warp-guided model also takes the points,
        and with `full` returns its whole WarpOutput (mask, warp, the generator's own image)."""
        if self.warp:
            return gen(x["sources"], x["source_lms"], x["target_lm"], x["source_points"],
                       x["target_points"], full=full)
        return gen(x["sources"], x["source_lms"], x["target_lm"])

    # -- steps ---------------------------------------------------------------------------
    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def d_step(self, x: dict[str, torch.Tensor]) -> dict[str, float]:
        with torch.no_grad(), self.autocast():
            fake, _ = self.render(self.gen, x)
        fake = area_down(fake.detach().float(), self.cfg.model.image_size)
        src0 = x["sources_lo"][:, 0]
        with self.autocast():
            out_i = self.d_i_ddp(torch.cat([torch.cat([x["target_lo"], src0], 1),
                                            torch.cat([fake, src0], 1)]))
            out_p = self.d_p_ddp(torch.cat([torch.cat([x["target_lo"], x["target_lm"]], 1),
                                            torch.cat([fake, x["target_lm"]], 1)]))
            loss_i = hinge_d_loss(*split_outputs(out_i))
            loss_p = hinge_d_loss(*split_outputs(out_p))
            loss = loss_i + loss_p
        self.check_finite(loss, "discriminator")
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt_d)
        self.scaler.update()
        return {"d/identity": loss_i.item(), "d/pose": loss_p.item()}

    def g_losses(self, x: dict[str, torch.Tensor], lambda_i: float, gen=None, d_i=None, d_p=None):
        """Eq. 5; also returns the generated batch. Used by the G step and by validation."""
        cfg = self.cfg
        gen = gen or self.gen_ddp
        d_i = d_i or self.d_i
        d_p = d_p or self.d_p
        parts = None
        if self.warp and (cfg.lambda_gen > 0 or cfg.lambda_mask > 0):
            parts = self.render(gen, x, full=True)
            fake_hi, weights = parts.image, parts.weights
        else:
            fake_hi, weights = self.render(gen, x)
        fake = area_down(fake_hi, cfg.model.image_size)
        if cfg.d_steps > 0:
            src0 = x["sources_lo"][:, 0]
            real_i, fake_i = split_outputs(d_i(torch.cat([torch.cat([x["target_lo"], src0], 1),
                                                          torch.cat([fake, src0], 1)])))
            real_p, fake_p = split_outputs(d_p(torch.cat([torch.cat([x["target_lo"], x["target_lm"]], 1),
                                                          torch.cat([fake, x["target_lm"]], 1)])))
            adv = hinge_g_loss(fake_i) + hinge_g_loss(fake_p)
            fm_i = feature_matching_loss(real_i, fake_i)
            fm_p = feature_matching_loss(real_p, fake_p)
        else:  # reconstruction only: no discriminator at all (a cheap first phase on a CPU)
            adv = fm_i = fm_p = fake.new_zeros((), dtype=torch.float32)
        perc = self.perceptual(fake, x["target_lo"]) if cfg.lambda_vgg > 0 else fake.new_zeros(())
        total = adv + cfg.lambda_fm * (lambda_i * fm_i + cfg.lambda_p * fm_p) + cfg.lambda_vgg * perc
        err = (fake_hi.float() - x["target"].float()).abs()
        l1 = err.mean()
        total = total + cfg.lambda_l1 * l1
        logs = {"g/total": total, "g/adv": adv, "g/fm_identity": fm_i, "g/fm_pose": fm_p,
                "g/perceptual": perc, "g/l1": l1}
        if self.face_id is not None:
            ident = self.face_id.identity_loss(fake_hi.float(), x["target"].float(), points=x["target_points"])
            total = total + cfg.lambda_id * ident
            logs["g/identity"] = ident
        if "region" in x:
            region = region_l1(err, x["region"])
            total = total + cfg.lambda_region * region
            logs["g/l1_eyes_mouth"] = region
        if parts is not None:
            total = total + self.generator_use_losses(parts, x, logs)
        logs["g/total"] = total
        return total, fake_hi, weights, logs

    def generator_use_losses(self, parts, x: dict[str, torch.Tensor], logs: dict) -> torch.Tensor:
        """Warp-guided model: L1 on the generator's own image (eyes and mouth weighted as in the
        main loss) and the oracle target for its blend mask (caingan.nn.losses)."""
        cfg = self.cfg
        total = parts.image.new_zeros((), dtype=torch.float32)
        size = cfg.model.image_size
        if cfg.lambda_gen > 0:
            err = (parts.generated.float() - x["target_lo"].float()).abs()
            gen_l1 = err.mean()
            if "region" in x:
                gen_l1 = gen_l1 + cfg.lambda_region / max(cfg.lambda_l1, 1.0) * region_l1(
                    err, area_down(x["region"], size))
            total = total + cfg.lambda_gen * gen_l1
            logs["g/l1_generator"] = gen_l1
        if cfg.lambda_mask > 0:
            mask_loss = oracle_mask_loss(parts.mask_logit, parts.warped, parts.generated,
                                         x["target_lo"], parts.valid,
                                         sharpness=cfg.mask_sharpness)
            total = total + cfg.lambda_mask * mask_loss
            logs["g/mask_oracle"] = mask_loss
        logs["g/mask_mean"] = parts.mask.detach().float().mean()
        return total

    def g_step(self, x: dict[str, torch.Tensor], lambda_i: float) -> tuple[dict[str, float], torch.Tensor]:
        for p in list(self.d_i.parameters()) + list(self.d_p.parameters()):
            p.requires_grad_(False)
        try:
            with self.autocast():
                total, fake, _, logs = self.g_losses(x, lambda_i)
            self.check_finite(total, "generator")
            self.opt_g.zero_grad(set_to_none=True)
            self.scaler.scale(total).backward()
            self.scaler.step(self.opt_g)
            self.scaler.update()
        finally:
            for p in list(self.d_i.parameters()) + list(self.d_p.parameters()):
                p.requires_grad_(True)
        return {k: float(v.item()) for k, v in logs.items()}, fake.detach()

    def check_finite(self, loss: torch.Tensor, which: str) -> None:
        if not torch.isfinite(loss).all():
            raise NonFiniteLoss(f"the {which} loss became {loss.item()} at step {self.step}; "
                                "stopping without saving, the last good checkpoint is kept")

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean L1 + perceptual on the held-out identity groups (a fixed sample)."""
        if self.val_set is None or len(self.val_set) == 0:
            return None
        self.gen.eval()
        total, n = 0.0, 0
        loader = DataLoader(self.val_set, batch_size=self.cfg.batch_size, shuffle=False, num_workers=0)
        for batch in loader:
            x = self.prepare(batch)
            with self.autocast():
                fake, _ = self.render(self.gen, x)
                lo = area_down(fake.float(), self.cfg.model.image_size)
                err = F.l1_loss(fake.float(), x["target"]) + self.perceptual(lo, x["target_lo"]).float()
            total += err.item() * fake.shape[0]
            n += fake.shape[0]
        self.gen.train()
        return total / max(1, n)

    # -- loop ----------------------------------------------------------------------------
    def log(self, logs: dict[str, float], x: dict[str, torch.Tensor] | None, fake=None) -> None:
        if not self.dist.is_main:
            return
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.run_dir / "tb"))
        for k, v in logs.items():
            self.writer.add_scalar(k, v, self.step)
        if x is not None and fake is not None:
            size = self.cfg.model.image_size
            grid = sample_grid(x["sources_lo"], x["target_lm"], area_down(fake, size), x["target_lo"])
            self.writer.add_image("samples", grid, self.step, dataformats="HWC")
            path = self.run_dir / "samples" / f"step_{self.step:08d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(path, grid)
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps({"step": self.step, "epoch": self.epoch, "time": time.time(), **logs}) + "\n")

    def after_save(self) -> None:
        val = self.validate() if self.dist.is_main else None
        if val is None:
            return
        self.log({"val/l1_perceptual": val}, None)
        if val < self.best_val and self.cfg.arch == "caingan":
            self.best_val = val
            save_model(self.run_dir / "best_model.safetensors", self.gen, self.cfg.model,
                       {"step": self.step, "val_l1_perceptual": val, "arch": self.cfg.arch})

    def run(self) -> int:
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:
            cfg.save(self.run_dir / "config.json")
        if not self.resume() and self.init_from:
            c = warm_start(self, self.init_from)
            self.step, self.epoch = c.get("step", 0), c.get("epoch", 0)
            if self.dist.is_main:
                print(f"warm start from {self.init_from} (step {self.step}, epoch {self.epoch})", flush=True)
        barrier(self.dist)
        start = time.time()
        stream = self.batches()
        from tqdm import tqdm
        total = cfg.max_steps or None
        bar = tqdm(total=total, initial=self.step, disable=not self.dist.is_main, unit="step",
                   dynamic_ncols=True, mininterval=5)
        try:
            while True:
                if cfg.max_steps and self.step >= cfg.max_steps:
                    break
                if self.epoch >= cfg.epochs:
                    break
                timed_out = cfg.max_minutes > 0 and (time.time() - start) / 60 >= cfg.max_minutes
                if any_true(self.stop_requested or timed_out, self.dist, self.device):
                    self.save()
                    break
                logs: dict[str, float] = {}
                for _ in range(cfg.d_steps):
                    logs.update(self.d_step(self.prepare(next(stream))))
                x = self.prepare(next(stream))
                progress = self.epoch + self.batch_in_epoch / self.batches_per_epoch
                lambda_i = cfg.lambda_i_at(progress)
                glogs, fake = self.g_step(x, lambda_i)
                logs.update(glogs)
                logs["lambda_i"] = lambda_i
                self.step += 1
                bar.update(1)
                if self.step % cfg.log_every == 0:
                    logs = {k: float(all_mean(torch.tensor(v), self.dist)) for k, v in logs.items()}
                    bar.set_postfix({k.split("/")[-1]: f"{v:.3f}" for k, v in logs.items()
                                     if k in ("g/total", "g/l1", "d/identity", "d/pose")})
                    show = self.step % cfg.image_every == 0
                    self.log(logs, x if show else None, fake if show else None)
                if self.step % cfg.save_every == 0:
                    self.save()
                    self.after_save()
        except NonFiniteLoss as exc:
            bar.close()
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return EXIT_NAN
        bar.close()
        if self.step % cfg.save_every != 0:
            self.save()
            self.after_save()
        if self.writer is not None:
            self.writer.close()
        return 0


def main(argv=None) -> int:
    """`caingan-train` / `python -m train.train`. Ctrl-C while setting up ends at once; during
    training it saves a checkpoint and stops after the current step. Either way: exit status
    130 and one line (caingan.cli)."""
    try:
        cfg, init_from = from_command_line(argv, description=__doc__.split("\n\n")[0])
        if not cfg.cache:
            raise CainGANError("no data cache given: build one with `python -m train.prepare` "
                               "and pass --cache DIR")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = pick_device(cfg.device)
        info = init_distributed(device)
        if device.type == "cuda" and info.enabled:
            device = torch.device("cuda", info.local_rank)
            torch.cuda.set_device(device)
        trainer = Trainer(cfg, device, info)
        trainer.init_from = init_from
    except (CainGANError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted("caingan-train")
    stopped_by: list[int] = []

    def request_stop(signum, frame):
        trainer.stop_requested = True
        if stopped_by:                  # already stopping: the checkpoint is being saved
            return
        stopped_by.append(signum)
        if info.is_main:
            what = "interrupted" if signum == signal.SIGINT else f"signal {signum}"
            print(f"\ncaingan-train: {what}; saving a checkpoint and stopping…", file=sys.stderr,
                  flush=True)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        code = trainer.run()
    finally:
        cleanup(info)
    return EXIT_INTERRUPTED if code == 0 and stopped_by == [signal.SIGINT] else code


if __name__ == "__main__":
    sys.exit(main())
