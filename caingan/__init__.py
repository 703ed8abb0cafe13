"""CainGAN: pose and expression manipulation with identity preservation (Ardelean & Sasu, 2020)."""

__version__ = "0.1.0"
