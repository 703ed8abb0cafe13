"""Where file dialogs open, and what they show."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QStandardPaths

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.webp);;All files (*)"
VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)"


def start_folder(*candidates) -> str:
    """Where a file dialog opens: the first of `candidates` that is an existing folder (the
    photo's folder, the last one used), else the user's Pictures folder, else home — never the
    process's working directory (for a user that is wherever the app was started from)."""
    for c in candidates:
        if c and Path(c).is_dir():
            return str(c)
    pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
    return pictures if pictures and Path(pictures).is_dir() else str(Path.home())
