"""The weights that ship in assets/: one place names them for the app, the exporter and tools."""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
# The default model: warp-guided CainGAN (caingan.nn.warp_model).
DEFAULT_WEIGHTS = ASSETS / "caingan-warp.safetensors"
# The paper's architecture at CPU size: kept as a preset and a comparison row.
PAPER_WEIGHTS = ASSETS / "caingan-small.safetensors"
