"""Face crops: the model sees a square, aligned-by-landmarks window; results are pasted back.

The geometry matches the training cache (train.prepare): the square's side is `margin` times the
landmarks' larger extent, centred on their box shifted up by 0.1 of its height (forehead room).
Only scale + translation, no rotation, so the crop looks like the training frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_MARGIN = 1.9
UP_SHIFT = 0.1


@dataclass
class FaceCrop:
    image: np.ndarray           # (size, size, 3) uint8 RGB
    points: np.ndarray          # (68, 2) float32, crop pixels
    matrix: np.ndarray          # (2, 3) float64, original → crop
    source_shape: tuple         # (H, W) of the original image

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def inverse(self) -> np.ndarray:
        return cv2.invertAffineTransform(np.asarray(self.matrix, np.float64))

    def to_crop(self, points) -> np.ndarray:
        p = np.asarray(points, np.float64)
        m = np.asarray(self.matrix, np.float64)
        return (p @ m[:, :2].T + m[:, 2]).astype(np.float32)

    def for_resized_original(self, scale: float) -> "FaceCrop":
        """The same crop of the photo resized by `scale` (cv2.resize's pixel-centre convention),
        so a preview can paste into a screen-sized copy instead of a 48 MP original."""
        m = np.asarray(self.matrix, np.float64)
        shift = (0.5 / scale - 0.5) * np.ones(2)
        small = np.concatenate([m[:, :2] / scale, (m[:, 2] + m[:, :2] @ shift)[:, None]], axis=1)
        h, w = self.source_shape[:2]
        return FaceCrop(self.image, self.points, small,
                        (max(1, round(h * scale)), max(1, round(w * scale))))

    def to_original(self, points) -> np.ndarray:
        p = np.asarray(points, np.float64)
        inv = self.inverse
        return (p @ inv[:, :2].T + inv[:, 2]).astype(np.float32)


def crop_matrix(points, size: int, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """2×3 original→crop matrix for these landmarks (ignores NaN points)."""
    p = np.asarray(points, np.float64)
    p = p[np.isfinite(p).all(axis=1)]
    if len(p) < 2:
        raise ValueError("need at least two finite landmarks to place a crop")
    x0, y0 = p.min(0)
    x1, y1 = p.max(0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - UP_SHIFT * (y1 - y0)
    side = max(margin * max(x1 - x0, y1 - y0), 1e-3)
    s = size / side
    return np.array([[s, 0.0, size / 2 - s * cx], [0.0, s, size / 2 - s * cy]], np.float64)


def warp_crop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """INTER_AREA when shrinking (no aliasing), linear when enlarging."""
    m = np.array(matrix, np.float64)
    scale = float(m[0, 0])
    if scale < 0.5:
        # warpAffine has no area filter: shrink the frame with INTER_AREA first, then warp ~1:1.
        h, w = image.shape[:2]
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        fx, fy = nw / w, nh / h
        # original x = (x' + 0.5) / fx - 0.5 (cv2.resize's pixel-centre convention)
        m = np.array([[m[0, 0] / fx, 0.0, m[0, 2] + m[0, 0] * (0.5 / fx - 0.5)],
                      [0.0, m[1, 1] / fy, m[1, 2] + m[1, 1] * (0.5 / fy - 0.5)]], np.float64)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def crop_face(image: np.ndarray, points, size: int, margin: float = DEFAULT_MARGIN) -> FaceCrop:
    image = np.asarray(image)
    m = crop_matrix(points, size, margin)
    out = warp_crop(image, m, size)
    crop = FaceCrop(np.ascontiguousarray(out), np.zeros((68, 2), np.float32), m,
                    tuple(image.shape[:2]))
    crop.points = crop.to_crop(points)
    return crop


def _soft_mask(size: int, feather: float) -> np.ndarray:
    """Elliptical mask over the crop, 1 inside the face, fading to 0 well before the border.

    The generator's background is invented, so only the face region is trusted: the ellipse's
    radius is 0.42 of the side, and `feather` (fraction of the side) is the width of the fade.
    """
    c = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.sqrt(((x - c) / (0.40 * size)) ** 2 + ((y - c) / (0.46 * size)) ** 2)
    f = max(float(feather), 1e-3) / 0.43
    return np.clip((1.0 - r) / f + 0.5, 0.0, 1.0)


def paste_back(original: np.ndarray, generated: np.ndarray, crop: FaceCrop,
               feather: float = 0.12) -> np.ndarray:
    """The generated crop inverse-warped into the original photo with a feathered elliptical mask.

    Only the face's window of the photo is warped and blended: on a 48 MP photo the whole-frame
    version took seconds per preview, the window takes milliseconds.
    """
    original = np.asarray(original)
    gen = np.asarray(generated)
    if gen.shape[0] != crop.size or gen.shape[1] != crop.size:
        gen = cv2.resize(gen, (crop.size, crop.size), interpolation=cv2.INTER_LINEAR)
    h, w = original.shape[:2]
    out = np.array(original[..., :3], dtype=np.uint8, copy=True)
    s = crop.size
    corners = crop.to_original(np.array([[0, 0], [s, 0], [0, s], [s, s]], np.float64))
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return out            # the face window lies outside the photo
    inv = crop.inverse.copy()
    inv[:, 2] -= (x0, y0)     # crop → window coordinates
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(gen, inv, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(_soft_mask(s, feather), inv, size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
    roi = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(warped.astype(np.float32) * mask + roi * (1 - mask) + 0.5,
                                0, 255).astype(np.uint8)
    return out


__all__ = ["FaceCrop", "crop_face", "crop_matrix", "paste_back", "warp_crop", "DEFAULT_MARGIN"]
