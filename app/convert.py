"""numpy RGB arrays ↔ QImage/QPixmap, copying so Qt never points into freed numpy memory."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage, QPixmap


def qimage_from_rgb(image: np.ndarray) -> QImage:
    """(H, W, 3) uint8 RGB or (H, W) gray → an independent QImage."""
    a = np.ascontiguousarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"expected uint8 image, got {a.dtype}")
    if a.ndim == 2:
        h, w = a.shape
        return QImage(a.data, w, h, a.strides[0], QImage.Format.Format_Grayscale8).copy()
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) image, got {a.shape}")
    h, w, _ = a.shape
    return QImage(a.data, w, h, a.strides[0], QImage.Format.Format_RGB888).copy()


def qpixmap_from_rgb(image: np.ndarray) -> QPixmap:
    return QPixmap.fromImage(qimage_from_rgb(image))


def rgb_from_qimage(image: QImage) -> np.ndarray:
    """Any QImage (e.g. from the clipboard, possibly with alpha) → (H, W, 3) uint8 RGB copy."""
    img = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, stride = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=stride * h).reshape(h, stride)
    return buf[:, : w * 3].reshape(h, w, 3).copy()
