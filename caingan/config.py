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
WARP_FIELDS = ("tps", "affine")
GEN_REGIONS = ("free", "parts", "mouth", "uncovered")
MOUTH_GAPS = ("stretch", "bands", "cavity")   # caingan.nn.mouth
AFFINE_REGIONS = ("none", "identity", "face")   # caingan.nn.part_mask


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
    image_size: int = 224           # a multiple of 16 (4 down-steps), 32 … 1024
    # Multiplies every channel count of the paper-size networks; FLOPs fall with its square.
    width: float = 1.0              # in (0, 4]
    base_channels: int = 64
    max_channels: int = 512
    # Spatial embedding e: channels at 1/4 of the image resolution (paper: 128).
    embed_channels: int = 128
    # Ablation switches: w/o T (embedder ignores the target landmarks), w/o R (plain mean, eq. 7).
    targeted: bool = True
    responsibility: bool = True
    # Warp-guided model (caingan.nn.warp_model): sources moved by a landmark warp, a generator for
    # what the warp cannot do. False = the paper's model.
    warp: bool = False
    # Warp-guided only: the resolution of the training output (bi-layer detail above image_size);
    # 0 = image_size. At inference the output follows the sources' resolution.
    output_size: int = 0
    # Warp-guided only: responsibilities are raised to this power before mixing (then renormalised):
    # > 1 lets the sharpest source win per region instead of averaging K slightly misaligned
    # warps into a blur. 1 = paper eq. 1 as is.
    mix_power: float = 1.0
    # Warp-guided model: prior on eq. 1's responsibilities for the sources whose pose is closest
    # to the target's: log-weights get −pose_prior · d_i, d_i = RMS distance of source i's
    # landmarks to the target's after a similarity alignment, relative to the face's size
    # (0 = off). A K-shot model should draw a region from the photo that already shows it.
    pose_prior: float = 0.0
    # Warp-guided model: the dense field from a source's landmarks to the target's, anchored on
    # the crop border: "tps" (thin-plate spline, smooth) or "affine" (piecewise-affine over a
    # Delaunay triangulation, as the baseline; caingan.nn.affine_warp).
    warp_field: str = "tps"
    # Gaussian blur of the field's displacement, σ as a fraction of the side (0 = none): softens
    # the creases a piecewise-affine field makes along triangle edges on large edits.
    field_smooth: float = 0.0
    # Gaussian blur of the sources' mixing weights at the network's resolution, σ as a fraction of
    # the side (0 = none): the responsibilities come at a quarter of it, so where the choice of
    # source switches sharply (mix_power, pose_prior) its boundary follows their 4-pixel blocks.
    mix_blur: float = 0.0
    # Warp-guided model: where the generator may replace the warp. "free": anywhere its blend mask
    # says; "parts": only in the target's eyes and mouth (grown a little; caingan.nn.part_mask),
    # "mouth": only inside the target's inner lips and only as far as the sources' mouths are
    # less open (the interior they hide), as Geng et al. 2018 confine theirs; both also where no
    # source covers the pixel; "uncovered" only there. Elsewhere the output is the warped photo.
    # Confined, the generator is not even run for a frame where its output cannot show
    # (WarpCainGAN.run_generator).
    gen_region: str = "free"
    # Warp-guided model: correct the landmark field with a small learned flow (the embedder's
    # third head). Off, the field is the landmark warp alone: the flow learned little on this
    # data and drifted into blur when the generator was trained with L1 (docs/EVALUATION.md).
    learned_flow: bool = True
    # Warp-guided model: where the target opens the mouth wider than a source (caingan.nn.mouth).
    # "stretch": the field stretches the source's mouth over the new opening (teeth grow);
    # "bands": inside the mouth the piecewise-affine field keeps a strip under each inner lip at
    # the source's height, so teeth stay their size and only the gap between stretches;
    # "cavity": bands, and the gap no source shows is painted as a dark mouth cavity.
    mouth_gap: str = "stretch"
    # Warp-guided model: where the target closes the eyes more than a source, the piecewise-affine
    # field with the lids kept half a pixel apart takes over the eyes from the spline, which on
    # its 32² lattice cannot shut an eye (caingan.nn.eyelids). False: the spline alone.
    eyelids: bool = False
    # Warp-guided model: where the piecewise-affine field takes over from the spline, always
    # (caingan.nn.part_mask.affine_window). The spline is smooth and global, so every mouth or
    # jaw motion also moves the eyes, the brows and the cheeks a little, which costs identity
    # (CSIM); the triangles move each part only with its own landmarks. "identity": the eyes,
    # brows and nose; "face": the whole face with a margin (forehead, jaw line), the spline
    # only bending the hair and background around it; "none": the spline everywhere.
    affine_region: str = "none"
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
                self.output_size == 0 or self.image_size <= self.output_size <= 4096):
            raise ConfigError(f"output_size must be 0 or in [image_size, 4096], got {self.output_size!r}")
        _check_number("mix_power", self.mix_power, 0, 64, open_low=True)
        _check_number("pose_prior", self.pose_prior, 0, 1000)
        _check_number("field_smooth", self.field_smooth, 0, 0.25)
        _check_number("mix_blur", self.mix_blur, 0, 0.1)
        _check_number("refiner_width", self.refiner_width, 0, _MAX_WIDTH, open_low=True)
        if self.warp_field not in WARP_FIELDS:
            raise ConfigError(f"warp_field must be one of {WARP_FIELDS}, got {self.warp_field!r}")
        if self.gen_region not in GEN_REGIONS:
            raise ConfigError(f"gen_region must be one of {GEN_REGIONS}, got {self.gen_region!r}")
        if self.mouth_gap not in MOUTH_GAPS:
            raise ConfigError(f"mouth_gap must be one of {MOUTH_GAPS}, got {self.mouth_gap!r}")
        if self.affine_region not in AFFINE_REGIONS:
            raise ConfigError(f"affine_region must be one of {AFFINE_REGIONS}, got {self.affine_region!r}")
        for name in ("targeted", "responsibility", "warp", "learned_flow", "part_refiner", "eyelids"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.baselines, BaselineConfig):
            raise ConfigError(f"baselines must be a BaselineConfig, got {self.baselines!r}")
        for f in dataclasses.fields(BaselineConfig):
            _check_int(f.name, getattr(self.baselines, f.name))

    def channels(self, n: int) -> int:
        """Paper channel count n scaled by the width multiplier (never below 8)."""
        return max(8, int(round(n * self.width)))

    @classmethod
    def paper(cls) -> "ModelConfig":
        return cls()

    @classmethod
    def small(cls) -> "ModelConfig":
        """The bundled CPU model: interactive on a 2-core CPU (see docs/benchmarks.md)."""
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
        """From to_dict() output, or from an older file whose baseline sizes sat in `extra`."""
        if not isinstance(d, dict):
            raise ConfigError(f"a model config must be a JSON object, got {type(d).__name__}")
        d = dict(d)
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


# Named model sizes for the command lines (`--preset`): the default model first.
# The ModelConfig settings a personalization may change while it is applied
# (caingan.pipeline.personalize; Reenactor.set_personalization refuses any other).
PERSONAL_SETTINGS = ("learned_flow", "mix_power", "mix_blur")

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
