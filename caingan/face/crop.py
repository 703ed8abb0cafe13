"""Face crops: the model sees a square, aligned-by-landmarks window; results are pasted back.

The geometry matches the training cache (train.prepare): the square's side is `margin` times the
landmarks' larger extent, centred on their box shifted up by 0.1 of its height (forehead room).
Only scale + translation, no rotation, so the crop looks like the training frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from caingan.face.landmark_file import rescale_points

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

    @property
    def native_side(self) -> int:
        """The crop square's side in photo pixels: its resolution in the photo itself."""
        m = np.asarray(self.matrix, np.float64)
        return max(1, int(round(self.size / np.sqrt(abs(np.linalg.det(m[:, :2]))))))

    def matrix_for(self, side: int) -> np.ndarray:
        """original → the same square sampled with `side` pixels (pixel centres on integers)."""
        k = side / self.size
        m = np.asarray(self.matrix, np.float64)
        return np.concatenate([m[:, :2] * k, (m[:, 2] * k + 0.5 * k - 0.5)[:, None]], axis=1)

    def resampled(self, image: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
        """(the crop at side² from the original photo, its points at that size): what a
        warp-guided model takes its detail from."""
        if int(side) == self.size:
            return self.image, np.asarray(self.points, np.float32)
        k = int(side) / self.size
        pts = (np.asarray(self.points, np.float64) + 0.5) * k - 0.5     # pixel centres
        return self.at_side(image, int(side)), pts.astype(np.float32)

    def at_side(self, image: np.ndarray, side: int) -> np.ndarray:
        """The same square of `image` (the original photo) at `side` × `side` pixels, e.g. at
        native_side to show or save the face at the photo's own resolution."""
        return warp_crop(np.asarray(image)[..., :3], self.matrix_for(int(side)), int(side))


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
    out = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    cover = _coverage(image.shape[:2], m, size, ramp=EDGE_FEATHER * size)
    if cover is None:
        return out
    return _fill_outside(out, cover)


def _coverage(shape: tuple, matrix: np.ndarray, size: int, ramp: float = 1.0) -> np.ndarray | None:
    """(size, size) float32: 1 where the crop shows the photo, 0 beyond its border, a ramp of
    `ramp` crop pixels just inside the border; None when the whole crop lies inside the photo
    (the common case: no cost)."""
    h, w = shape[:2]
    inv = cv2.invertAffineTransform(np.asarray(matrix, np.float64))
    corners = np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]], np.float64)
    src = corners @ inv[:, :2].T + inv[:, 2]
    if src.min() >= 0 and (src[:, 0] <= w - 1).all() and (src[:, 1] <= h - 1).all():
        return None
    u = np.arange(size, dtype=np.float32)
    x = inv[0, 0] * u[None, :] + inv[0, 1] * u[:, None] + inv[0, 2]
    y = inv[1, 0] * u[None, :] + inv[1, 1] * u[:, None] + inv[1, 2]
    r = max(1.0, ramp * float(np.sqrt(abs(np.linalg.det(inv[:, :2])))))   # in photo pixels
    cx = np.clip(np.minimum(x + 1, w - x) / r, 0, 1)
    cy = np.clip(np.minimum(y + 1, h - y) / r, 0, 1)
    return (cx * cy).astype(np.float32)


FILL_SIDE = 64        # the padding is computed at this resolution (it holds no detail)
EDGE_FEATHER = 0.02   # the photo's border fades into the padding over this fraction of the crop


def _fill_outside(image: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Where the crop extends beyond the photo: the photo's colours near its border, blurred more
    the further out, fading to their mean colour. No texture is invented, so nothing there looks
    like content (edge replication drew streaks; mirroring drew a second, ghostly face)."""
    size = image.shape[0]
    img = image.astype(np.float32)
    c = cover[..., None]
    known = img * c
    fs = min(size, FILL_SIDE)
    small_known = cv2.resize(known, (fs, fs), interpolation=cv2.INTER_AREA).reshape(fs, fs, -1)
    small_cover = cv2.resize(cover, (fs, fs), interpolation=cv2.INTER_AREA)[..., None]
    total = float(small_cover.sum())
    if total < 1e-3:                  # no photo pixel in the crop at all: neutral grey
        return np.full_like(image, 128)
    # the mean colour of the photo's strip along its border (what the background is made of)
    inside = small_cover > 0.99
    near = cv2.dilate((small_cover < 0.99).astype(np.uint8), np.ones((3, 3), np.uint8),
                      iterations=max(1, fs // 16))[..., None].astype(bool) & inside
    band = near if near.any() else small_cover > 0
    mean = (small_known * band).sum((0, 1)) / np.maximum((small_cover * band).sum((0, 1)), 1e-6)
    # normalized convolution, coarse to fine: each scale refines the colours near the border
    fill = np.broadcast_to(mean, small_known.shape).astype(np.float32)
    for sigma in (fs / 4, fs / 8, fs / 16, fs / 32):
        num = cv2.GaussianBlur(small_known, (0, 0), sigma).reshape(small_known.shape)
        den = cv2.GaussianBlur(small_cover, (0, 0), sigma).reshape(small_cover.shape)
        w = np.clip(den * 4.0, 0, 1)
        fill = w * (num / np.maximum(den, 1e-6)) + (1 - w) * fill
    # fade towards the mean with the distance from the photo (in crop sides)
    dist = cv2.distanceTransform((small_cover < 0.5).astype(np.uint8), cv2.DIST_L2, 3)[..., None]
    fade = np.exp(-dist / (0.12 * fs))
    fill = fade * fill + (1 - fade) * mean
    fill = cv2.resize(fill, (size, size), interpolation=cv2.INTER_LINEAR).reshape(img.shape)
    out = img * c + fill * (1 - c)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def crop_face(image: np.ndarray, points, size: int, margin: float = DEFAULT_MARGIN) -> FaceCrop:
    image = np.asarray(image)
    m = crop_matrix(points, size, margin)
    out = warp_crop(image, m, size)
    crop = FaceCrop(np.ascontiguousarray(out), np.zeros((68, 2), np.float32), m,
                    tuple(image.shape[:2]))
    crop.points = crop.to_crop(points)
    return crop


def resize_square(image: np.ndarray, side: int) -> np.ndarray:
    """A square crop (e.g. the model's output) at `side` pixels: area-averaged when shrinking,
    bicubic when enlarging (smooth, never blocky nearest-neighbour pixels)."""
    image = np.asarray(image)
    if image.shape[0] == side and image.shape[1] == side:
        return image
    grow = side > image.shape[0]
    out = cv2.resize(image, (side, side),
                     interpolation=cv2.INTER_CUBIC if grow else cv2.INTER_AREA)
    return out


def resize_crop(image: np.ndarray, points, side: int) -> tuple[np.ndarray, np.ndarray]:
    """A square crop and its (68,2) pixel points at side²: area-averaged when shrinking,
    bilinear when enlarging, as they are at that size (personalization's examples and blend fit)."""
    s = image.shape[0]
    if s != side:
        image = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA if s > side else cv2.INTER_LINEAR)
        points = rescale_points(points, s, side)
    return np.ascontiguousarray(image), np.asarray(points, np.float32)

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
    # The generated square keeps its own resolution (a model may render more pixels than its
    # landmark crop has), but never more than the face has in the photo (no aliased shrink).
    side = gen.shape[0] if gen.shape[0] == gen.shape[1] else crop.size
    side = max(min(side, crop.native_side), min(side, crop.size))
    gen = resize_square(gen, side) if gen.shape[:2] != (side, side) else gen
    h, w = original.shape[:2]
    out = np.array(original[..., :3], dtype=np.uint8, copy=True)
    s = side
    m = crop.matrix_for(s)
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0], [s, 0], [0, s], [s, s]], np.float64) @ inv[:, :2].T + inv[:, 2]
    x0, y0 = np.floor(corners.min(0)).astype(int) - 1
    x1, y1 = np.ceil(corners.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return out            # the face window lies outside the photo
    inv = inv.copy()
    inv[:, 2] -= (x0, y0)     # crop → window coordinates
    size = (x1 - x0, y1 - y0)
    grow = abs(np.linalg.det(inv[:, :2])) > 1.0      # the face is bigger in the photo: bicubic
    warped = cv2.warpAffine(gen, inv, size, flags=cv2.INTER_CUBIC if grow else cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(_soft_mask(s, feather), inv, size, flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
    roi = out[y0:y1, x0:x1].astype(np.float32)
    out[y0:y1, x0:x1] = np.clip(warped.astype(np.float32) * mask + roi * (1 - mask) + 0.5,
                                0, 255).astype(np.uint8)
    return out


__all__ = ["FaceCrop", "crop_face", "crop_matrix", "paste_back", "resize_crop", "resize_square", "warp_crop",
           "DEFAULT_MARGIN"]
