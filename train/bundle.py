"""The weights shipped in assets/: export them from a run, and warm-start a new run from them.

The app needs only the generator side: `caingan-warp.safetensors` (the default, warp-guided model)
or `caingan-small.safetensors` (the paper's model). A warp-guided model ships with the default
render settings (caingan.config.RenderSettings at its trained size: the render of the bundled
model), changed only by `--set FIELD=VALUE`. To let a later run (on a fresh machine)
continue training from what is committed, the discriminators and the step counters ride along in
`assets/train/` (`discriminators.safetensors` for the paper's model, `<name>-discriminators…`
for others). Adam's moments are not shipped: with β1 = 0 there is
no momentum, and the second moment (β2 = 0.9) rebuilds within a few dozen steps.

    python -m train.bundle --run-dir runs/small --out assets
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


from caingan.assets import DEFAULT_WEIGHTS, PAPER_WEIGHTS
from caingan.config import ModelConfig, RenderSettings, apply_overrides
from caingan.errors import CainGANError
from caingan.nn.checkpoint import drop_retired, load_checkpoint, load_module_state, save_checkpoint, save_model

from . import state as st
from .config import TrainConfig
from .models import build_generator

DISC_KIND = "caingan-discriminators"


def model_file(model: ModelConfig) -> str:
    """The shipped file name of a model: the default warp-guided one or the paper's."""
    return (DEFAULT_WEIGHTS if model.warp else PAPER_WEIGHTS).name


def disc_file(model_name: str) -> str:
    if model_name == PAPER_WEIGHTS.name:
        return "train/discriminators.safetensors"   # the paper model's file keeps its first name
    return f"train/{Path(model_name).stem}-discriminators.safetensors"


def shipped_settings(model: ModelConfig, overrides: list[str] | tuple[str, ...] = ()) -> RenderSettings | None:
    """The render settings a warp-guided model ships with: the default ones at its trained size,
    with each "FIELD=VALUE" of `overrides` applied (None for the paper's model, which has none)."""
    if not model.warp:
        if overrides:
            raise CainGANError("the paper's model has no render settings to set")
        return None
    default = RenderSettings.for_model(model)
    return RenderSettings.from_dict(apply_overrides(RenderSettings, default.to_dict(), list(overrides)))


def export(run_dir: Path, out: Path, name: str | None = None,
           settings: list[str] | tuple[str, ...] = ()) -> tuple[Path, Path]:
    """The run's newest weights → out/name (+ discriminators). A warp-guided model's JSON holds
    the default render settings with `settings` ("FIELD=VALUE", RenderSettings fields) applied."""
    ckpts = st.list_checkpoints(run_dir)
    if not ckpts:
        raise CainGANError(f"{run_dir}: no checkpoints to export")
    step, path = ckpts[-1]
    tensors, meta = load_checkpoint(path, kind=st.KIND)
    cfg = TrainConfig.from_dict(meta["config"])
    gen = build_generator(cfg)
    if cfg.model.warp:
        tensors = drop_retired(tensors, "gen.")
    load_module_state(gen, {k[4:]: v for k, v in tensors.items() if k.startswith("gen.")}, path)
    counters = meta["counters"]
    extra = {"step": step, "epoch": counters["epoch"], "train_config": meta["config"],
             "source_checkpoint": path.name}
    name = name or model_file(cfg.model)
    render = shipped_settings(cfg.model, settings)
    model_path = save_model(out / name, gen, cfg.model, extra, render)
    disc = {k: v for k, v in tensors.items() if k.startswith(("d_i.", "d_p."))}
    disc_path = save_checkpoint(out / disc_file(name), disc, {"kind": DISC_KIND, "counters": counters,
                                                       "config": meta["config"]})
    return model_path, disc_path


def warm_start(trainer, source: Path) -> dict[str, Any]:
    """Load E+G (and discriminators + counters when shipped beside them) into a fresh trainer."""
    source = Path(source)
    model_path = source / model_file(trainer.cfg.model) if source.is_dir() else source
    tensors, meta = load_checkpoint(model_path, kind="caingan-model")
    if trainer.cfg.model.warp:
        tensors = drop_retired(tensors)
    load_module_state(trainer.gen, tensors, model_path)
    disc_path = model_path.parent / disc_file(model_path.name)
    counters: dict[str, Any] = {}
    if disc_path.is_file():
        dt, dmeta = load_checkpoint(disc_path, kind=DISC_KIND)
        load_module_state(trainer.d_i, {k[4:]: v for k, v in dt.items() if k.startswith("d_i.")}, disc_path)
        load_module_state(trainer.d_p, {k[4:]: v for k, v in dt.items() if k.startswith("d_p.")}, disc_path)
        counters = dmeta.get("counters", {})
    return counters


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Export a run's newest weights into assets/.")
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--out", default=Path("assets"), type=Path)
    p.add_argument("--name", default=None, help="file name (default: by the model's kind, "
                   f"{DEFAULT_WEIGHTS.name} or {PAPER_WEIGHTS.name})")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="warp-guided model: a render setting to ship other than the default "
                        "(caingan.config.RenderSettings, e.g. mix_power=8)")
    args = p.parse_args(argv)
    try:
        for path in export(args.run_dir, args.out, args.name, args.set):
            print(path)
    except CainGANError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
