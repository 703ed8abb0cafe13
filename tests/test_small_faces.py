"""Small faces in large photos: a real face pasted small into a 1080p and a 48 MP canvas is found
(detection first runs on a 640 px copy, where such a face is ~20 px and HOG misses it; larger
copies are searched when that copy shows no face), and a photo whose face shows on the small copy
never pays for the larger ones."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from caingan.errors import NoFaceError
from caingan.face.landmarks import LandmarkDetector
from caingan.media.images import load_image


@pytest.fixture(scope="module")
def detector() -> LandmarkDetector:
    return LandmarkDetector("dlib")


@pytest.fixture(scope="module")
def face(detector, stills):
    """A real face still and its landmarks."""
    for path in stills:
        image = load_image(path)
        try:
            return image, detector.detect(image).points
        except NoFaceError:
            continue
    pytest.fail("no still with a detectable face")


def _photo(face, width: int, height: int, face_px: float) -> tuple[np.ndarray, np.ndarray]:
    """A width×height photo (a textured grey background) with the face pasted so that its
    landmarks are face_px wide; returns the photo and where the landmarks went."""
    image, points = face
    rng = np.random.default_rng(0)
    noise = np.clip(rng.normal(120, 25, (height // 8 + 1, width // 8 + 1, 3)), 0, 255)
    photo = cv2.resize(noise.astype(np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    s = face_px / np.ptp(points[:, 0])
    small = cv2.resize(image, (round(image.shape[1] * s), round(image.shape[0] * s)),
                       interpolation=cv2.INTER_AREA)
    x, y = int(width * 0.6), int(height * 0.3)
    photo[y:y + small.shape[0], x:x + small.shape[1]] = small
    return photo, points * s + (x, y)


@pytest.mark.parametrize("width, height, face_px", [(1920, 1080, 60), (1920, 1080, 70),
                                                    (8000, 6000, 250), (8000, 6000, 320)])
@pytest.mark.slow
def test_a_small_face_in_a_large_photo_is_found(detector, face, width, height, face_px):
    photo, truth = _photo(face, width, height, face_px)
    t0 = time.perf_counter()
    det = detector.detect(photo, name="photo.jpg")
    seconds = time.perf_counter() - t0
    assert np.abs(det.points - truth).mean() < 0.05 * face_px
    assert seconds < 30, f"{seconds:.1f} s"


def test_a_face_the_small_copy_shows_costs_no_larger_search(detector, face, monkeypatch):
    calls = []
    more = detector._impl.more_boxes

    def searched(x):                    # runs when the larger copies are searched
        calls.append(x.shape)
        yield from more(x)

    monkeypatch.setattr(detector._impl, "more_boxes", searched)
    photo, truth = _photo(face, 1920, 1080, 200)
    det = detector.detect(photo)
    assert np.abs(det.points - truth).mean() < 0.05 * 200
    assert calls == []
    blank = np.full((1080, 1920, 3), 128, np.uint8)
    with pytest.raises(NoFaceError, match="no face found"):
        detector.detect(blank)
    assert calls == [(1080, 1920)]                # only where the small copy showed no face


def test_two_faces_found_on_a_larger_copy_come_largest_first(detector, face):
    photo, big = _photo(face, 1920, 1080, 70)
    image, points = face
    s = 55 / np.ptp(points[:, 0])
    small = cv2.resize(image, (round(image.shape[1] * s), round(image.shape[0] * s)),
                       interpolation=cv2.INTER_AREA)
    photo[100:100 + small.shape[0], 200:200 + small.shape[1]] = small
    faces = detector.detect_all(photo)
    assert len(faces) == 2
    assert np.abs(faces[0].points - big).mean() < 0.05 * 70
    assert faces[1].points[:, 0].mean() < 400 and len(faces[0].others) == 1
