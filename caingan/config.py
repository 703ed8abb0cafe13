"""Model configuration: one dataclass so the CPU model and the paper-size model share all code.

A config also arrives from files (a checkpoint's JSON sidecar, a run's config.json), so it is
checked when built: a value outside the ranges below is refused with a ConfigError before any
network is allocated (a `width` of 200 would otherwise ask for tens of GB first).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from caingan.errors import CainGANError


class ConfigError(CainGANError, ValueError):
    """A model or training configuration holds an unknown field or a value out of range."""


@dataclass
class BaselineConfig:
    """Sizes of the paper's comparison networks (train/baselines.py); CainGAN itself ignores them."""

    pix2pixhd_blocks: int = 9       # residual blocks at pix2pixHD's bottleneck
    fshm_res_blocks: int = 5        # AdaIN residual blocks at FSHM's bottleneck


# (low, high) inclusive bounds of every numeric field; sizes beyond them are typos or attacks.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "image_size": (32, 1024),
    "base_channels": (8, 4096),
    "max_channels": (8, 4096),
    "embed_channels": (1, 4096),
    "disc_scales": (1, 6),
    "disc_layers": (1, 8),
    "pix2pixhd_blocks": (0, 64),
    "fshm_res_blocks": (0, 64),
}
_MAX_WIDTH = 4.0
GEN_REGIONS = ("free", "parts", "mouth", "uncovered")
MOUTH_GAPS = ("stretch", "bands", "cavity")   # caingan.nn.mouth
MAX_SOURCES = 16        # source photos at most: the editor, caingan-export and personalization


def _check_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    low, high = _INT_RANGES[name]
    if not low <= value <= high:
        raise ConfigError(f"{name} {value} is out of range [{low}, {high}]")


def _check_number(name: str, value: Any, low: float, high: float, open_low: bool = False) -> None:
    """A finite real number in [low, high] (in (low, high] with open_low)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
        and (low < value if open_low else low <= value) and value <= high
    if not ok:
        raise ConfigError(f"{name} must be a number in {'(' if open_low else '['}{low:g}, {high:g}], "
                          f"got {value!r}")


@dataclass
class ModelConfig:
    """The networks' architecture: what the weights are shaped by. How the warp-guided model
    renders (its mixing, where its generator may paint, the output's size) is a RenderSettings,
    kept beside it in a checkpoint's JSON."""

    image_size: int = 224           # the networks' side S, a multiple of 16 (4 down-steps), 32 … 1024
    # Multiplies every channel count of the paper-size networks; FLOPs fall with its square.
    width: float = 1.0              # in (0, 4]
    base_channels: int = 64
    max_channels: int = 512
    # Spatial embedding e: channels at 1/4 of the image resolution (paper: 128).
    embed_channels: int = 128
    # Ablation switches of the paper's model: w/o T (embedder ignores the target landmarks), w/o R
    # (plain mean, eq. 7). The warp-guided model's embedder always sees the target, and it always
    # mixes by responsibility.
    targeted: bool = True
    responsibility: bool = True
    # Warp-guided model (caingan.nn.warp_model): sources moved by a landmark warp, a generator for
    # what the warp cannot do. False = the paper's model.
    warp: bool = False
    # Warp-guided model: the side of the images it is trained to output (the training data's
    # size; bi-layer detail above image_size); 0 = image_size. What it renders at inference is
    # RenderSettings.output_size.
    output_size: int = 0
    # Warp-guided model: small mouth and eye networks redraw those parts on the output at its
    # resolution (caingan.nn.part_refiner, after Geng et al. 2018); the rest stays the warp.
    part_refiner: bool = False
    refiner_width: float = 1.0      # its channel multiplier, in (0, 4]
    # Discriminator: pix2pixHD multi-scale PatchGAN.
    disc_scales: int = 2
    disc_layers: int = 4
    baselines: BaselineConfig = field(default_factory=BaselineConfig)

    def __post_init__(self) -> None:
        if isinstance(self.baselines, dict):
            self.baselines = _baselines_from_dict(self.baselines)
        self.validate()

    def validate(self) -> None:
        """ConfigError naming the first field whose type or value is out of range."""
        for name in ("image_size", "base_channels", "max_channels", "embed_channels",
                     "disc_scales", "disc_layers"):
            _check_int(name, getattr(self, name))
        if self.image_size % 16:
            raise ConfigError(f"image_size must be a multiple of 16 (4 down-steps), got {self.image_size}")
        _check_number("width", self.width, 0, _MAX_WIDTH, open_low=True)
        if isinstance(self.output_size, bool) or not isinstance(self.output_size, int) or not (
                self.output_size == 0 or self.image_size <= self.output_size <= MAX_OUTPUT_SIZE):
            raise ConfigError(f"output_size must be 0 or in [image_size, {MAX_OUTPUT_SIZE}], "
                              f"got {self.output_size!r}")
        _check_number("refiner_width", self.refiner_width, 0, _MAX_WIDTH, open_low=True)
        for name in ("targeted", "responsibility", "warp", "part_refiner"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.warp and not self.responsibility:
            raise ConfigError("the warp-guided model always mixes its sources by responsibility "
                              "(responsibility must be true)")
        if not isinstance(self.baselines, BaselineConfig):
            raise ConfigError(f"baselines must be a BaselineConfig, got {self.baselines!r}")
        for f in dataclasses.fields(BaselineConfig):
            _check_int(f.name, getattr(self.baselines, f.name))

    @property
    def trained_size(self) -> int:
        """The side of the images the model is trained to output (output_size, or image_size)."""
        return self.output_size or self.image_size

    def channels(self, n: int) -> int:
        """Paper channel count n scaled by the width multiplier (never below 8)."""
        return max(8, int(round(n * self.width)))

    @classmethod
    def paper(cls) -> "ModelConfig":
        return cls()

    @classmethod
    def small(cls) -> "ModelConfig":
        """The paper's model at CPU size: interactive on a 2-core CPU (see docs/benchmarks.md)."""
        # Width 0.3125 fits G ≤ 80 ms alone, but the editor's K=1 drag-to-preview budget (60 ms)
        # covers embedding + G: 0.25 measured 44 ms (G) + ~12 ms (K=1 embed); see benchmarks.md.
        return cls(image_size=128, width=0.25, embed_channels=32)

    @classmethod
    def warp_small(cls) -> "ModelConfig":
        """The default model: warp-guided, networks at 128², trained against 256² targets."""
        return cls(image_size=128, width=0.25, embed_channels=32, warp=True, output_size=256)

    @classmethod
    def tiny(cls, image_size: int = 64) -> "ModelConfig":
        """For tests: seconds per training step on a CPU."""
        return cls(image_size=image_size, width=0.125, embed_channels=16, max_channels=256)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """From to_dict() output, or from an older file: its baseline sizes in `extra`, its
        render settings among the model's fields (read them with RenderSettings.from_legacy;
        here they are left out), and the retired options of RETIRED_FIELDS (ignored)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a model config must be a JSON object, got {type(d).__name__}")
        d = {k: v for k, v in d.items() if k not in LEGACY_RENDER and k not in RETIRED_FIELDS}
        legacy = d.pop("extra", None) or {}     # before BaselineConfig: an untyped dict
        if not isinstance(legacy, dict):
            raise ConfigError(f"ModelConfig 'extra' must be an object, got {legacy!r}")
        _refuse_unknown("ModelConfig", d, cls)
        if legacy:
            if "baselines" in d:
                raise ConfigError("ModelConfig has both 'extra' and 'baselines'")
            d["baselines"] = legacy
        if "baselines" in d:
            d["baselines"] = _baselines_from_dict(d["baselines"])
        return cls(**d)


MAX_OUTPUT_SIZE = 4096


@dataclass(frozen=True)
class RenderSettings:
    """How the warp-guided model renders: settings of the render, not of the weights (the same
    weights render under any of them). A Reenactor holds the general settings (from the
    checkpoint's JSON) and a personalization's changes, and passes them to
    WarpCainGAN.render with every call. The defaults are the shipped render of
    assets/caingan-warp.json (`RenderSettings()` at the default model's 256²)."""

    # Side of the rendered image in pixels; the sources and their points come at this size.
    output_size: int = 256
    # Responsibilities are raised to this power before mixing (then renormalised): > 1 lets the
    # sharpest source win per region instead of averaging K slightly misaligned warps into a
    # blur. 1 = paper eq. 1 as is.
    mix_power: float = 16.0
    # Prior on eq. 1's responsibilities for the sources whose pose is closest to the target's:
    # log-weights get −pose_prior · d_i, d_i = RMS distance of source i's landmarks to the
    # target's after a similarity alignment, relative to the face's size (0 = off). A K-shot
    # model should draw a region from the photo that already shows it.
    pose_prior: float = 1000.0
    # Gaussian blur of the sources' mixing weights at the network's resolution, σ as a fraction
    # of the side (0 = none): the responsibilities come at a quarter of it, so where the choice
    # of source switches sharply (mix_power, pose_prior) its boundary follows their 4-pixel blocks.
    mix_blur: float = 0.04
    # Where the generator may replace the warp. "free": anywhere its blend mask says; "parts":
    # only in the target's eyes and mouth (grown a little; caingan.nn.part_mask), "mouth": only
    # inside the target's inner lips and only as far as the sources' mouths are less open (the
    # interior they hide), as Geng et al. 2018 confine theirs; both also where no source covers
    # the pixel; "uncovered" only there. Elsewhere the output is the warped photo. Confined, the
    # generator is not even run for a frame where its output cannot show.
    gen_region: str = "uncovered"
    # Where the target opens the mouth wider than a source (caingan.nn.mouth). "stretch": the
    # field stretches the source's mouth over the new opening (teeth grow); "bands": inside the
    # mouth the piecewise-affine field keeps a strip under each inner lip at the source's height,
    # so teeth stay their size and only the gap between stretches; "cavity": bands, and the gap
    # no source shows is painted as a dark mouth cavity.
    mouth_gap: str = "cavity"
    # Where the target closes the eyes more than a source, the piecewise-affine field with the
    # lids kept half a pixel apart takes over the eyes (caingan.nn.eyelids). False: the face's
    # piecewise-affine field with the target's lids as they are.
    eyelids: bool = True

    def __post_init__(self) -> None:
        _check_int_in("output_size", self.output_size, 32, MAX_OUTPUT_SIZE)
        _check_number("mix_power", self.mix_power, 0, 64, open_low=True)
        _check_number("pose_prior", self.pose_prior, 0, 1000)
        _check_number("mix_blur", self.mix_blur, 0, 0.1)
        if self.gen_region not in GEN_REGIONS:
            raise ConfigError(f"gen_region must be one of {GEN_REGIONS}, got {self.gen_region!r}")
        if self.mouth_gap not in MOUTH_GAPS:
            raise ConfigError(f"mouth_gap must be one of {MOUTH_GAPS}, got {self.mouth_gap!r}")
        if not isinstance(self.eyelids, bool):
            raise ConfigError(f"eyelids must be true or false, got {self.eyelids!r}")

    def replace(self, **changes: Any) -> "RenderSettings":
        """These settings with `changes` (validated: a ConfigError names a bad one)."""
        _refuse_unknown("RenderSettings", changes, RenderSettings)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> "RenderSettings":
        if not isinstance(d, dict):
            raise ConfigError(f"render settings must be a JSON object, got {type(d).__name__}")
        _refuse_unknown("RenderSettings", d, cls)
        return cls(**d)

    @classmethod
    def for_model(cls, cfg: ModelConfig) -> "RenderSettings":
        """The shipped render at the size `cfg` is trained to output."""
        return cls(output_size=cfg.trained_size)

    @classmethod
    def training(cls, cfg: ModelConfig) -> "RenderSettings":
        """What training renders with (WarpCainGAN.forward): eq. 1 as is (no sharpening, no pose
        prior, no blur), the generator free to replace the warp anywhere, the mouth stretched
        and the lids as the target's, at the size the model is trained to output."""
        return cls(output_size=cfg.trained_size, mix_power=1.0, pose_prior=0.0, mix_blur=0.0,
                   gen_region="free", mouth_gap="stretch", eyelids=False)

    @classmethod
    def from_legacy(cls, d: dict[str, Any], cfg: ModelConfig) -> "RenderSettings":
        """The settings an older checkpoint's model config (render settings among its fields)
        rendered with: its values, those it lacks at what the code then assumed (LEGACY_RENDER)."""
        return cls(output_size=cfg.trained_size,
                   **{k: d.get(k, default) for k, default in LEGACY_RENDER.items()})


# An older model config's render fields and the values it meant when it lacked them.
LEGACY_RENDER: dict[str, Any] = {"mix_power": 1.0, "pose_prior": 0.0, "mix_blur": 0.0,
                                 "gen_region": "free", "mouth_gap": "stretch", "eyelids": False}
# Options an older model config may hold that no longer exist: the learned flow correction (off
# in the shipped render; its head's tensors are dropped on load), the field's smoothing and its
# other kinds (the shipped field is the spline with the piecewise-affine field over the face).
# Measured in CHANGELOG.md (2026-12-02, 2026-12-03) and docs/ablations/WARP_FIELD.md.
RETIRED_FIELDS = ("learned_flow", "warp_field", "field_smooth", "affine_region")


def _check_int_in(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def _refuse_unknown(what: str, d: dict[str, Any], cls: type) -> None:
    unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"unknown {what} fields: {sorted(unknown)}")


def _baselines_from_dict(d: Any) -> BaselineConfig:
    if isinstance(d, BaselineConfig):
        return d
    if not isinstance(d, dict):
        raise ConfigError(f"ModelConfig 'baselines' must be an object, got {d!r}")
    _refuse_unknown("BaselineConfig", d, BaselineConfig)
    return BaselineConfig(**d)


_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_field(cls: type, name: str, text: str) -> Any:
    """The text of a command-line FIELD=VALUE as the type of `cls`'s field `name` (its default's
    type): "false"/"0"/"no"/"off" is False for a bool field (``bool("false")`` would be True),
    "3" is 3.0 for a float field. A ConfigError names the field and what it wants."""
    defaults = {f.name: f for f in dataclasses.fields(cls)}
    if name not in defaults:
        raise ConfigError(f"{cls.__name__} has no field {name!r}; fields: {', '.join(defaults)}")
    f = defaults[name]
    if f.default is not dataclasses.MISSING:
        default = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        default = f.default_factory()                   # type: ignore[misc]
    else:
        default = ""
    kind = type(default)
    low = text.strip().lower()
    if kind is bool:
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ConfigError(f"{name} wants true or false, got {text!r}")
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            raise ConfigError(f"{name} wants {'an integer' if kind is int else 'a number'}, "
                              f"got {text!r}") from None
    if kind is str:
        return text
    raise ConfigError(f"{name} cannot be set from the command line")


def apply_overrides(cls: type, values: dict[str, Any], specs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`values` (a dict of `cls`'s fields) with each "FIELD=VALUE" in `specs` applied, typed by
    parse_field; a spec without "=" or a value is a ConfigError."""
    out = dict(values)
    for spec in specs:
        name, eq, text = str(spec).partition("=")
        if not eq or not name.strip() or not text.strip():
            raise ConfigError(f"{spec!r}: want FIELD=VALUE")
        out[name.strip()] = parse_field(cls, name.strip(), text.strip())
    return out


# The RenderSettings a personalization may change while it is applied
# (caingan.pipeline.personalize; Reenactor.set_personalization refuses any other).
PERSONAL_SETTINGS = ("mix_power", "mix_blur")

# Named model sizes for the command lines (`--preset`): the default model first. The render
# settings that ship with a model are RenderSettings.for_model(MODEL_PRESETS[name]()).

MODEL_PRESETS = {
    "warp": ModelConfig.warp_small,   # warp-guided, the app's default
    "small": ModelConfig.small,       # the paper's model at CPU size
    "paper": ModelConfig.paper,       # the paper's model, 224², width 1
    "tiny": ModelConfig.tiny,         # for tests
}


# Frame rates: one range for the command line, landmark/keyframe files, the dialog and writers.
MIN_FPS = 0.1                   # one frame per 10 s
MAX_FPS = 240.0


def check_fps(fps, what: str = "fps", error: type[CainGANError] = CainGANError) -> float:
    """A usable frame rate as a float: finite, MIN_FPS ≤ fps ≤ MAX_FPS, else `error`.

    An infinite or absurd rate used to hang the old video writer or fail after every frame was
    rendered; this check runs where a rate comes in (command line, files, dialog) instead.
    """
    ok = isinstance(fps, numbers.Real) and not isinstance(fps, bool)
    try:
        ok = ok and math.isfinite(float(fps)) and MIN_FPS <= float(fps) <= MAX_FPS
    except (OverflowError, TypeError, ValueError):
        ok = False
    if not ok:
        shown = repr(fps) if len(repr(fps)) <= 40 else repr(fps)[:37] + "..."
        raise error(f"{what} must be a number of frames per second from {MIN_FPS:g} to "
                    f"{MAX_FPS:g}, got {shown}")
    return float(fps)
