"""Training configuration: one dataclass, saved beside every checkpoint and reloaded on resume.

The training command line is generated from the dataclass fields (tyro): every field is a flag
(`--k`, `--lr-g`, `--image-size`, `--no-targeted`...), with the field's comment as its help.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence, get_args

import tyro

from caingan.config import MODEL_PRESETS, ConfigError, ModelConfig

Arch = Literal["caingan", "pix2pixhd", "fshm"]      # pix2pixhd, fshm: the paper's baselines
Ablation = Literal["wo_t", "wo_r", "wo_i"]
Perceptual = Literal["vgg19", "vgg16_hed", "none"]  # vgg19 (paper) | vgg16_hed (offline)
Amp = Literal["auto", "none", "bf16", "fp16"]
ABLATIONS: tuple[str, ...] = get_args(Ablation)


@dataclass
class TrainConfig:
    cache: str = ""                 # data cache written by train.prepare (one .npz per clip)
    run_dir: str = "runs/default"
    arch: Arch = "caingan"          # caingan, or a baseline: pix2pixhd | fshm
    model: ModelConfig = field(default_factory=ModelConfig.small)
    k: int = 8
    batch_size: int = 4
    epochs: int = 1000
    samples_per_clip: int = 1       # paper: K+1 frames per video per epoch
    val_groups: int = 2             # identity groups of the train split held out for "best"
    # Optimisation (official code): TTUR, Adam betas (0, 0.9), 2 D steps per G step.
    lr_g: float = 4e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    d_steps: int = 2                # 0 = reconstruction losses only, no discriminator
    # Loss weights (eq. 5). lambda_i grows linearly to its final value over the warm-up epochs.
    lambda_fm: float = 10.0
    lambda_vgg: float = 10.0
    lambda_p: float = 1.0
    lambda_i: float = 1.0
    lambda_i_warmup_epochs: int = 10
    # Warp-guided model: L1 at the output resolution, and extra L1 weight on eyes and mouth.
    lambda_l1: float = 0.0
    lambda_region: float = 0.0
    # Identity: 1 − cos of 128-D face descriptors (caingan.nn.face_id; the network dlib's CSIM uses).
    lambda_id: float = 0.0
    # Warp-guided model, so that its generator is used (the blend mask saturates at the warp
    # otherwise): L1 on the generator's own image G (eyes and mouth weighted by lambda_region as
    # well), and a per-pixel target for the mask: the warp unless G is closer to the truth by a
    # margin (caingan.nn.losses.oracle_mask_loss).
    lambda_gen: float = 0.0
    lambda_mask: float = 0.0
    mask_sharpness: float = 0.0     # the oracle also compares gradient magnitudes (0 = L1 only)
    perceptual: Perceptual = "vgg16_hed"  # vgg19 (paper) | vgg16_hed (offline) | none
    amp: Amp = "auto"               # mixed precision; auto = bf16 on a CUDA device that has it
    seed: int = 0
    num_workers: int = 2
    cache_gb: float = 2.0           # decoded clips kept in RAM per data process (LRU)
    device: str = "auto"
    threads: int = 0                # torch CPU threads; 0 = torch default
    log_every: int = 10
    image_every: int = 200
    save_every: int = 100           # steps (G steps) between checkpoints
    keep_last: int = 3
    max_steps: int = 0              # 0 = no limit
    max_minutes: float = 0.0        # 0 = no limit; stops cleanly after a checkpoint
    ablations: Annotated[tuple[Ablation, ...], tyro.conf.arg(name="ablation"),
                         tyro.conf.UseAppendAction] = ()  # w/o T, w/o R, w/o I (paper §4); repeatable

    def __post_init__(self) -> None:
        # Never edits objects the caller passed in: the model config is replaced, not changed.
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        elif not isinstance(self.model, ModelConfig):
            raise ConfigError(f"model must be a ModelConfig, got {self.model!r}")
        self.betas = tuple(self.betas)
        self.ablations = tuple(self.ablations)
        for name, kind in (("arch", Arch), ("perceptual", Perceptual), ("amp", Amp)):
            if getattr(self, name) not in get_args(kind):
                raise ConfigError(f"unknown {name} {getattr(self, name)!r}; choose from {get_args(kind)}")
        bad = set(self.ablations) - set(ABLATIONS)
        if bad:
            raise ConfigError(f"unknown ablation(s) {sorted(bad)}; choose from {ABLATIONS}")
        if "wo_t" in self.ablations:
            self.model = dataclasses.replace(self.model, targeted=False)
        if "wo_r" in self.ablations:
            self.model = dataclasses.replace(self.model, responsibility=False)
        if "wo_i" in self.ablations:
            # w/o I: identity FM weighted like pose FM from the first step.
            self.lambda_i = self.lambda_p
            self.lambda_i_warmup_epochs = 0
        if self.d_steps < 0 or self.k < 1 or self.batch_size < 1:
            raise ConfigError("k and batch_size must be ≥ 1, d_steps ≥ 0 (0 = no discriminator)")

    def lambda_i_at(self, epoch_progress: float) -> float:
        """λ_I after `epoch_progress` epochs (fractional): linear warm-up, then constant."""
        if self.lambda_i_warmup_epochs <= 0:
            return self.lambda_i
        return self.lambda_i * min(1.0, max(0.0, epoch_progress) / self.lambda_i_warmup_epochs)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["ablations"] = list(self.ablations)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        if not isinstance(d, dict):
            raise ConfigError(f"a training config must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ConfigError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


# -- command line ----------------------------------------------------------------------------
# What a resumed run may change; everything else stays as the run was started.
OVERRIDABLE = ("max_steps", "max_minutes", "epochs", "num_workers", "device", "threads",
               "log_every", "image_every", "save_every", "keep_last")
PRESETS = tuple(MODEL_PRESETS)


@dataclass
class _Command:
    train: TrainConfig
    config: str | None = None       # TrainConfig JSON to start from (a run's config.json works)
    preset: Literal["warp", "small", "paper", "tiny"] | None = None  # model size, before --image-size etc.
    init_from: str | None = None    # warm start a new run from shipped weights (e.g. assets/)


def from_command_line(argv: Sequence[str] | None = None, description: str | None = None
                      ) -> tuple[TrainConfig, str | None]:
    """→ (config, --init-from). Layers, last wins: defaults, --config, --preset, other flags.

    When --run-dir already holds a config.json the run resumes: its own config wins and only the
    OVERRIDABLE knobs may change (a warning names any other flag that was ignored).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in ("--config", "--run-dir", "--preset"):
        pre.add_argument(flag)
    known, _ = pre.parse_known_args(argv)
    saved = Path(known.run_dir) / "config.json" if known.run_dir else None
    resuming = saved is not None and saved.is_file()
    if resuming:
        base = TrainConfig.load(saved).to_dict()
    else:
        base = TrainConfig.load(known.config).to_dict() if known.config else TrainConfig().to_dict()
        if known.preset in PRESETS:
            base["model"] = MODEL_PRESETS[known.preset]().to_dict()
    # --ablation appends; it starts empty so that given ablations replace the base's.
    default = _Command(train=TrainConfig.from_dict({**base, "ablations": []}))
    cmd = tyro.cli(_Command, args=argv, default=default, description=description,
                   config=(tyro.conf.OmitArgPrefixes,))
    parsed = cmd.train.to_dict()
    if not parsed["ablations"]:
        parsed["ablations"] = base["ablations"]
    if not resuming:
        return TrainConfig.from_dict(parsed), cmd.init_from
    ignored = [k for k in parsed if k not in OVERRIDABLE and parsed[k] != base[k]]
    ignored += [f"--{k}" for k in ("config", "preset") if getattr(known, k)]
    if ignored:
        print(f"warning: resuming {known.run_dir} with its own config.json; ignored: "
              f"{', '.join(ignored)} (only {', '.join(OVERRIDABLE)} may change)", file=sys.stderr)
    return TrainConfig.from_dict({**base, **{k: parsed[k] for k in OVERRIDABLE}}), cmd.init_from
