"""Source photos in the editor: choosing among several faces, false faces, the face at the photo's
resolution in the Target view and in a saved result, bounded photo sizes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt

from testdata import still

from .conftest import add_photo, wait_model, wait_quiet


def _still(person: int, photo: int) -> np.ndarray:
    from caingan.media.images import load_image
    return load_image(still(person, photo))


@pytest.fixture(scope="module")
def two_faces_photo(tmp_path_factory, shared_data):
    """A big face on the left, a small one on the right."""
    from caingan.media.images import save_image
    canvas = np.full((380, 640, 3), 128, np.uint8)
    canvas[40:340, 20:320] = cv2.resize(_still(0, 2), (300, 300), interpolation=cv2.INTER_CUBIC)
    canvas[110:260, 430:580] = _still(2, 2)
    return save_image(tmp_path_factory.mktemp("two") / "two-people.png", canvas)


@pytest.fixture(scope="module")
def big_photo(tmp_path_factory, shared_data):
    """A 1500 px photo whose face is ~700 px wide: far more detail than the model's crop."""
    from caingan.media.images import save_image
    face = cv2.resize(_still(7, 2), (900, 900), interpolation=cv2.INTER_CUBIC)
    canvas = cv2.copyMakeBorder(face, 300, 300, 300, 300, cv2.BORDER_REFLECT)
    return save_image(tmp_path_factory.mktemp("big") / "portrait.png", canvas)


def _blockiness(image: np.ndarray) -> float:
    """Second over first differences along rows: ≈ 2 for nearest-neighbour enlarged pixels (flat
    runs, then steps), well below 1 for a smooth picture."""
    g = image.astype(np.float32).mean(-1)
    return float(np.abs(np.diff(g, 2, axis=1)).mean() / max(np.abs(np.diff(g, axis=1)).mean(), 1e-6))


def _grab(widget) -> np.ndarray:
    from app.convert import rgb_from_qimage
    return rgb_from_qimage(widget.grab().toImage())


# --- several faces ------------------------------------------------------------------------------
@pytest.mark.slow
def test_click_the_other_face_of_a_two_face_photo(qtbot, make_window, two_faces_photo):
    w = make_window()
    wait_model(qtbot, w)
    sid = add_photo(qtbot, w, two_faces_photo)
    src = w.sources[sid]
    assert src.n_faces == 2 and src.face_index == 0
    assert "2 faces" in w.sources_panel.item_text(sid)
    assert (src.crop.to_original(src.crop.points)[:, 0] < 330).all(), "the largest face first"
    w.sources_panel.select(sid)
    assert w.sources_panel.face_button.isEnabled()

    from app.sources_panel import FacePicker
    qtbot.mouseClick(w.sources_panel.face_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.findChild(FacePicker) is not None, timeout=5000)
    picker = w.findChild(FacePicker)
    qtbot.waitUntil(picker.isVisible, timeout=5000)
    pane = picker.pane
    qtbot.waitUntil(lambda: not pane.box_rect(1).isEmpty(), timeout=5000)
    right = pane.box_rect(1).center().toPoint()
    assert pane.box_rect(1).center().x() > pane.box_rect(0).center().x(), "face 2 is on the right"
    with qtbot.waitSignal(w.previewShown, timeout=20000):
        qtbot.mouseClick(pane, Qt.MouseButton.LeftButton, pos=right)
    qtbot.waitUntil(lambda: w.findChild(FacePicker) is None, timeout=5000)  # closed

    now = w.sources[sid]
    assert now.face_index == 1
    assert (now.crop.to_original(now.crop.points)[:, 0] > 420).all(), "the right face's crop"
    assert w.target is now, "the face being edited is the chosen one"
    np.testing.assert_allclose(w.doc.shown_points(), now.crop.points)
    assert np.array_equal(w.editor.image_item.image, now.view)
    assert "face 2 used" in w.sources_panel.item_text(sid)


def test_a_photo_with_one_face_offers_no_choice(qtbot, make_window, good_photo):
    w = make_window()
    wait_model(qtbot, w)
    sid = add_photo(qtbot, w, good_photo)
    w.sources_panel.select(sid)
    assert not w.sources_panel.face_button.isEnabled()
    from app.sources_panel import choose_face
    assert choose_face(w, sid) is None


def test_choose_face_button_fits_a_1024x640_screen(qtbot, make_window, two_faces_photo):
    w = make_window()
    wait_model(qtbot, w)
    add_photo(qtbot, w, two_faces_photo)
    w.resize(1024, 640)
    qtbot.waitUntil(lambda: w.width() == 1024 and w.height() == 640, timeout=5000)
    b = w.sources_panel.face_button
    assert b.isVisible() and b.width() >= b.sizeHint().width()
    assert b.visibleRegion().boundingRect() == b.rect()


# --- false faces --------------------------------------------------------------------------------
def test_a_name_patch_is_not_taken_for_a_face(qtbot, make_window, detector, tmp_path):
    from skimage import data

    from caingan.media.images import save_image
    photo = data.astronaut()
    cx = int(detector.detect(photo).points[:, 0].mean())
    path = save_image(tmp_path / "astronaut-cut.png", np.ascontiguousarray(photo[:, cx + 5:]))
    w = make_window()
    wait_model(qtbot, w)
    with qtbot.waitSignal(w.sourceFailed, timeout=20000) as blocker:
        w.add_files([str(path)])
    msg = blocker.args[1]
    assert "did not look like a face" in msg, msg
    assert w.sources == {} and w.sources_panel.count() == 0


# --- resolution ---------------------------------------------------------------------------------
def test_target_view_shows_the_face_at_the_photo_resolution(qtbot, make_window, big_photo):
    w = make_window()
    wait_model(qtbot, w)
    sid = add_photo(qtbot, w, big_photo)
    src = w.sources[sid]
    shown = w.editor.image_item.image
    assert shown.shape[0] > 4 * w.image_size, "the Target view shows the model's tiny crop"
    assert shown.shape[0] == min(src.crop.native_side, 768)
    # the landmarks still sit on the face: the view's coordinates stay the crop's
    r = w.editor.image_item.mapRectToParent(w.editor.image_item.boundingRect())
    assert r.width() == pytest.approx(w.image_size) and r.left() == pytest.approx(-0.5)
    # what the user sees: a smooth face, not blocks of enlarged pixels
    w.resize(1280, 800)
    w.editor.points_item.hide()             # judge the picture, not the landmark dots
    qtbot.wait(100)
    ed = _grab(w.editor)
    c = np.array(ed.shape[:2]) // 2
    face = ed[c[0] - 80:c[0] + 80, c[1] - 80:c[1] + 80].astype(np.int16)
    assert face.std() > 10, "the grab shows the face"
    same = float((np.abs(np.diff(face, axis=1)).max(-1) == 0).mean())
    assert same < 0.3, f"pixelated Target view: {same:.0%} of neighbours are copies"
    # the model's (small) output in the Preview: enlarged smoothly too
    pv = _grab(w.preview_pane)
    c = np.array(pv.shape[:2]) // 2
    out = pv[c[0] - 80:c[0] + 80, c[1] - 80:c[1] + 80].astype(np.int16)
    assert out.std() > 3
    same = float((np.abs(np.diff(out, axis=1)).max(-1) == 0).mean())
    assert same < 0.3, f"pixelated Preview: {same:.0%} of neighbours are copies"


@pytest.mark.slow
def test_saved_result_has_the_photo_resolution(qtbot, make_window, big_photo, tmp_path):
    from caingan.media.images import load_image
    w = make_window()
    wait_model(qtbot, w)
    sid = add_photo(qtbot, w, big_photo)
    w.sliders.set_value("smile", 0.5)
    wait_quiet(qtbot, w)
    assert not w.paste_back_box.isChecked()
    assert w.save_result(tmp_path / "face.png")
    saved = load_image(tmp_path / "face.png")
    side = w.sources[sid].crop.native_side
    assert side > 1000 and saved.shape == (side, side, 3), saved.shape
    assert _blockiness(saved) < 1.0, "upscaled smoothly, not nearest-neighbour"
    small = cv2.resize(saved, w.last_result.image.shape[:2][::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - w.last_result.image).mean() < 4


# --- memory -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_photos_are_bounded_while_loading(qtbot, make_window, big_photo, monkeypatch):
    import app.detect_worker as dw
    monkeypatch.setattr(dw, "PHOTO_MAX_SIDE", 1000)
    w = make_window()
    wait_model(qtbot, w)
    sid = add_photo(qtbot, w, big_photo)
    assert max(w.sources[sid].original.shape[:2]) == 1000
    big = np.zeros((1200, 1500, 3), np.uint8)
    big[:] = cv2.resize(w.sources[sid].original, (1500, 1200))
    with qtbot.waitSignal(w.sourceAdded, timeout=20000) as blocker:
        w.add_image(big, "pasted")
    assert max(w.sources[blocker.args[0]].original.shape[:2]) == 1000
