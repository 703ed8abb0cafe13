"""The editor window end to end on a tiny random model: photos in, drags and sliders, previews out."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox

from caingan.face import landmark_edit as le
from caingan.pipeline.inference import Reenactor

from .conftest import add_photo, mouse_drag, wait_model, wait_quiet

UPPER_FACE = np.r_[17:48]


def shown(w) -> np.ndarray:
    return w.doc.shown_points().copy()


def errors(w) -> list[str]:
    return [m.text for m in w.notifier.history if m.level == "error"]


# ----------------------------------------------------------------------------- photos

@pytest.mark.slow
def test_photos_load_as_thumbnails_and_bad_files_become_messages(
        qtbot, make_window, good_photo, corrupt_photo, faceless_photo):
    w = make_window()
    wait_model(qtbot, w)
    failed = []
    w.sourceFailed.connect(lambda i, msg: failed.append(msg))
    w.add_files([str(corrupt_photo), str(good_photo), str(faceless_photo)])
    assert w.sources_panel.count() == 3          # shown at once as "detecting…"
    qtbot.waitUntil(lambda: len(failed) == 2 and len(w.sources) == 1, timeout=30000)

    assert w.sources_panel.count() == 1 and len(w.sources) == 1
    src = next(iter(w.sources.values()))
    assert src.crop.image.shape == (w.image_size, w.image_size, 3)
    icon = w.sources_panel.list.item(0).icon()
    assert not icon.isNull()
    assert good_photo.name in w.sources_panel.item_text(src.job_id)
    errs = errors(w)
    assert any(corrupt_photo.name in e for e in errs), errs
    assert any(faceless_photo.name in e and "face" in e.lower() for e in errs), errs
    # Both failures are on screen, not just the last one.
    assert w.banner.isVisible()
    assert corrupt_photo.name in w.banner.text() and faceless_photo.name in w.banner.text()
    # the good photo became the target and is being previewed
    assert w.target is src
    np.testing.assert_allclose(shown(w), src.crop.points, atol=1e-4)
    wait_quiet(qtbot, w)   # the preview may already have arrived while the others failed
    assert w.last_result.image.shape == (w.image_size, w.image_size, 3)
    assert "Device: CPU" in w.device_label.text()
    assert w.latency_label.text().endswith(" ms") and "–" not in w.latency_label.text()


def test_several_sources_reorder_remove_and_responsibility_maps(
        qtbot, make_window, good_photo, second_photo):
    w = make_window()
    wait_model(qtbot, w)
    a = add_photo(qtbot, w, good_photo)
    b = add_photo(qtbot, w, second_photo)
    wait_quiet(qtbot, w)
    assert w.last_result.source_ids == (a, b)
    assert w.last_result.weights.shape[0] == 2
    np.testing.assert_allclose(w.last_result.weights.sum(0), 1.0, atol=1e-3)

    # "Show which source": the face coloured by source, the two photos as its legend below.
    w.sources_used_box.setChecked(True)
    shown_img = w.preview_pane.image()
    side = shown_img.shape[1]
    assert shown_img.shape[0] > side * 1.1                   # face + legend row
    legend = shown_img[side:]
    tiles = legend[legend.reshape(len(legend), -1).std(1) > 0]   # rows with content
    assert len(tiles) >= side // 8                           # thumbnails big enough to see
    from app.preview_worker import SOURCE_COLOURS
    row = tiles[len(tiles) // 2]
    for k in range(2):                                       # each framed in its colour
        assert (np.abs(row.astype(int) - SOURCE_COLOURS[k]).sum(1) < 10).any()
    w.sources_used_box.setChecked(False)
    assert w.preview_pane.image().shape == w.last_result.display.shape

    w.sources_panel.list.setCurrentRow(1)
    with qtbot.waitSignal(w.previewShown, timeout=20000,
                          check_params_cb=lambda r: r.source_ids == (b, a)):
        w.sources_panel._move(-1)     # the ▲ button
    from PySide6.QtCore import QModelIndex
    with qtbot.waitSignal(w.previewShown, timeout=20000,
                          check_params_cb=lambda r: r.source_ids == (a, b)):
        # what an internal drag and drop does to the list's model
        assert w.sources_panel.list.model().moveRow(QModelIndex(), 1, QModelIndex(), 0)
    w.remove_sources([a])
    qtbot.waitUntil(lambda: w.last_result.source_ids == (b,), timeout=20000)
    assert w.sources_panel.ids() == [b]
    assert w.target is w.sources[b]   # the edited photo went: the next one is edited
    w.remove_sources([b])
    assert "Add a source photo" in w.preview_pane.message()


def test_paste_image_from_clipboard(qtbot, make_window, good_photo):
    from app.convert import qimage_from_rgb
    from caingan.media.images import load_image

    w = make_window()
    wait_model(qtbot, w)
    QGuiApplication.clipboard().setImage(qimage_from_rgb(load_image(good_photo)))
    with qtbot.waitSignal(w.sourceAdded, timeout=20000):
        w.paste_action.trigger()
    assert "pasted image" in w.sources_panel.item_text(w.source_ids()[0])
    QGuiApplication.clipboard().clear()
    w.paste_from_clipboard()
    assert "no image" in w.notifier.last().text


def test_missing_weights_still_open_with_a_clear_message(qtbot, make_window, tmp_path, good_photo):
    missing = tmp_path / "nope.safetensors"
    w = make_window(weights=missing)
    assert "No model weights found at nope.safetensors" in w.preview_pane.message()
    assert str(missing) not in w.preview_pane.message()          # the name; the path as a tip
    assert w.preview_pane.toolTip() == str(missing)
    warning = w.notifier.last("warning")
    assert "nope.safetensors" in warning.text and str(missing) not in warning.text
    assert warning.details == str(missing)
    # photos and editing still work without a model
    with qtbot.waitSignal(w.sourceAdded, timeout=20000):
        w.add_files([str(good_photo)])
    assert w.doc.active and w.editor.points() is not None


def test_broken_weights_file_is_reported(qtbot, make_window, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    w = make_window(weights=bad)
    qtbot.waitUntil(lambda: "Could not load the model" in w.preview_pane.message(), timeout=20000)
    assert any("Model not loaded" in e for e in errors(w))


# ----------------------------------------------------------------------------- editing

def test_drag_moves_point_previews_it_and_undo_redo_restore(qtbot, make_window, good_photo):
    w = make_window()
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    wait_quiet(qtbot, w)
    before = shown(w)
    start = before[57]
    end = start + (4.0, 6.0)
    with qtbot.waitSignal(w.previewShown, timeout=20000,
                          check_params_cb=lambda r: np.allclose(r.points[57], end, atol=1.0)):
        mouse_drag(w.editor, start, end)
    after = shown(w)
    np.testing.assert_allclose(after[57], end, atol=1.0)   # under the cursor (screen rounding)
    moved = np.flatnonzero(np.abs(after - before).max(1) > 1e-4)
    assert list(moved) == [57]
    assert w.doc.undo_stack.count() == 1                    # the whole drag is one step
    assert w.windowTitle().endswith("*")

    qtbot.keyClick(w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(shown(w), before)
    qtbot.keyClick(w, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)
    np.testing.assert_array_equal(shown(w), after)
    qtbot.keyClick(w, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(w, Qt.Key.Key_Z,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    np.testing.assert_array_equal(shown(w), after)
    wait_quiet(qtbot, w)
    np.testing.assert_allclose(w.last_result.points, after)


@pytest.mark.slow
def test_shift_drag_moves_part_and_symmetric_mode_mirrors(qtbot, make_window, good_photo):
    w = make_window()
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    before = shown(w)
    brow = le.RIGHT_BROW
    mouse_drag(w.editor, before[19], before[19] + (0, -5), modifiers=Qt.KeyboardModifier.ShiftModifier)
    d = shown(w) - before
    assert np.allclose(d[brow], d[19], atol=1e-3) and d[19, 1] < -3
    assert np.abs(np.delete(d, brow, 0)).max() < 1e-4

    w.doc.reset()
    w.symmetric_action.setChecked(True)
    base = shown(w)
    mouse_drag(w.editor, base[37], base[37] + (-3, -4))
    d = shown(w) - base
    frame = le.face_frame(base)
    np.testing.assert_allclose(le.mirror_delta(d[37], frame), d[44], atol=1e-3)
    assert np.abs(d[37]).max() > 2
    # a press away from every point does not edit anything
    n = w.doc.undo_stack.count()
    mouse_drag(w.editor, (1, 1), (10, 10))
    assert w.doc.undo_stack.count() == n


def test_each_slider_moves_the_right_points(qtbot, make_window, good_photo):
    w = make_window()
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    base = shown(w)
    iod = le.face_frame(base).scale

    def with_slider(name, value):
        w.sliders.set_value(name, value)
        pts = shown(w)
        w.sliders.set_value(name, 0)
        np.testing.assert_allclose(shown(w), base, atol=1e-4)   # absolute, not cumulative
        return pts

    p = with_slider("mouth_open", 1.0)
    assert (p[66, 1] - p[62, 1]) - (base[66, 1] - base[62, 1]) > 0.3 * iod   # lips apart
    assert p[8, 1] > base[8, 1] + 0.2 * iod                                  # chin drops
    np.testing.assert_allclose(p[UPPER_FACE], base[UPPER_FACE], atol=1e-4)
    p = with_slider("smile", 1.0)
    assert p[48, 1] < base[48, 1] and p[54, 1] < base[54, 1]
    np.testing.assert_allclose(p[:48], base[:48], atol=1e-4)
    p = with_slider("brows", 1.0)
    assert (p[17:27, 1] < base[17:27, 1]).all()
    np.testing.assert_allclose(np.delete(p, np.r_[17:27], 0), np.delete(base, np.r_[17:27], 0),
                               atol=1e-4)
    p = with_slider("eyes_close", 1.0)
    assert np.linalg.norm(p[37] - p[41]) < 0.2 * np.linalg.norm(base[37] - base[41]) + 1e-3
    np.testing.assert_allclose(np.delete(p, np.r_[36:48], 0), np.delete(base, np.r_[36:48], 0),
                               atol=1e-4)
    p = with_slider("yaw", 30)
    assert p[30, 0] - base[30, 0] > 0.2 * iod
    p = with_slider("pitch", 20)
    assert p[30, 1] - base[30, 1] < -0.15 * iod
    p = with_slider("roll", 20)
    eye = p[45] - p[36]
    eye0 = base[45] - base[36]
    turn = np.degrees(np.arctan2(-eye[1], eye[0]) - np.arctan2(-eye0[1], eye0[0]))
    assert turn == pytest.approx(20, abs=1.0)


def test_sliders_on_top_of_drags_and_undo_of_slider_steps(qtbot, make_window, good_photo):
    w = make_window()
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    base = shown(w)
    w.sliders.set_value("yaw", 20)
    for v in (21, 22, 23):                   # keyboard-like steps on one slider merge
        w.sliders.set_value("yaw", v)
    assert w.doc.undo_stack.count() == 1
    rotated = shown(w)
    # a drag with the slider on: the grabbed point ends under the cursor
    target = rotated[57] + (0, 5)
    mouse_drag(w.editor, rotated[57], target)
    np.testing.assert_allclose(shown(w)[57], target, atol=1.0)
    # slider back to 0 keeps the drag (it edited the base)
    w.sliders.set_value("yaw", 0)
    assert np.abs(shown(w)[57] - base[57]).max() > 2
    np.testing.assert_allclose(np.delete(shown(w), 57, 0), np.delete(base, 57, 0), atol=1e-3)
    # undo back through: slider, drag, slider
    for _ in range(3):
        w.undo_action.trigger()
    np.testing.assert_allclose(shown(w), base, atol=1e-5)
    assert w.sliders.params().is_neutral()


def test_reset_and_symmetrize(qtbot, make_window, good_photo):
    w = make_window()
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    base = shown(w)
    w.sliders.set_value("smile", 0.5)
    w.symmetrize_action.trigger()
    sym = w.doc.state.base
    np.testing.assert_allclose(le.mirror_landmarks(sym), sym, atol=1e-3)
    w.reset_action.trigger()
    np.testing.assert_array_equal(shown(w), base)
    assert w.sliders.params().is_neutral()
    w.undo_action.trigger()
    np.testing.assert_allclose(w.doc.state.base, sym)


# ----------------------------------------------------------------------------- worker

def slow_loader(delay: float, calls: list | None = None, fail: threading.Event | None = None):
    """Real tiny model with a slower generate (and an on-demand failure)."""
    def load(path, device):
        r = Reenactor.from_checkpoint(path, device)
        real = r.generate

        def generate(points):
            time.sleep(delay)
            if fail is not None and fail.is_set():
                raise RuntimeError("simulated failure inside the model")
            out = real(points)
            if calls is not None:
                calls.append(np.array(points))
            return out
        r.generate = generate
        return r
    return load


@pytest.mark.slow
def test_stale_requests_are_dropped_latest_wins(qtbot, make_window, good_photo):
    calls: list = []
    w = make_window(loader=slow_loader(0.25, calls))
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    wait_quiet(qtbot, w)
    n0 = len(calls)
    stats0 = w.preview.stats()
    shown_ids = []
    w.previewShown.connect(lambda r: shown_ids.append(r.request_id))
    t = time.perf_counter()
    for v in range(1, 41):                   # 40 edits far faster than one render
        w.sliders.set_value("smile", v / 40)
    gui_ms = (time.perf_counter() - t) * 1000
    wait_quiet(qtbot, w)
    renders = len(calls) - n0
    assert renders <= 3, renders             # the one in flight (if any) + the newest
    assert w.preview.stats()["dropped"] - stats0["dropped"] >= 37
    np.testing.assert_allclose(w.last_result.points, shown(w))
    np.testing.assert_allclose(calls[-1], shown(w))
    assert shown_ids == sorted(shown_ids) and shown_ids[-1] == w._request_id
    assert gui_ms < 40 * 25, gui_ms          # the GUI never waited for a render


def test_worker_exception_is_shown_and_the_window_recovers(qtbot, make_window, good_photo):
    fail = threading.Event()
    w = make_window(loader=slow_loader(0.0, fail=fail))
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    fail.set()
    with qtbot.waitSignal(w.notifier.posted, timeout=20000,
                          check_params_cb=lambda m: m.level == "error"):
        w.sliders.set_value("mouth_open", 0.5)
    msg = errors(w)[-1]
    assert "Preview failed" in msg and "simulated failure" in msg and "RuntimeError" in msg
    assert w.banner.isVisible()
    fail.clear()
    with qtbot.waitSignal(w.previewShown, timeout=20000):
        w.sliders.set_value("mouth_open", 0.6)
    np.testing.assert_allclose(w.last_result.points, shown(w))
    w.undo_action.trigger()                  # the editor itself kept working throughout
    assert w.sliders.params().mouth_open == 0.0   # (consecutive steps of one slider: one undo)


def test_paste_back_shows_the_whole_photo(qtbot, make_window, good_photo):
    from caingan.media.images import load_image

    w = make_window()
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    photo = load_image(good_photo)
    with qtbot.waitSignal(w.previewShown, timeout=20000,
                          check_params_cb=lambda r: r.pasted is not None):
        w.paste_back_box.setChecked(True)
    assert w.last_result.pasted.shape == photo.shape
    assert w.preview_pane.image().shape[:2] == w.last_result.display.shape[:2]
    with qtbot.waitSignal(w.previewShown, timeout=20000, check_params_cb=lambda r: r.pasted is None):
        w.paste_back_box.setChecked(False)


@pytest.mark.slow
def test_paste_back_preview_of_a_big_photo_is_screen_sized_and_saved_full_size(
        qtbot, make_window, good_photo, tmp_path):
    import cv2

    from caingan.media.images import load_image, save_image
    photo = load_image(good_photo)
    big = cv2.resize(photo, (photo.shape[1] * 8, photo.shape[0] * 8), interpolation=cv2.INTER_CUBIC)
    path = save_image(tmp_path / "big.jpg", big)
    w = make_window()
    wait_model(qtbot, w)
    add_photo(qtbot, w, path)
    with qtbot.waitSignal(w.previewShown, timeout=20000,
                          check_params_cb=lambda r: r.pasted is not None):
        w.paste_back_box.setChecked(True)
    assert max(w.last_result.display.shape[:2]) <= 1024 < max(big.shape[:2])
    assert w.save_result(tmp_path / "out.png")
    saved = load_image(tmp_path / "out.png")
    assert saved.shape == big.shape
    assert not errors(w)


@pytest.mark.slow
def test_show_which_source_with_the_bundled_model_at_photo_size(
        qtbot, make_window, good_photo, second_photo):
    """The bundled warp-guided model renders at the face's size in the photo but mixes its
    sources at its networks' size: the overlay must draw both, and keep following the edits."""
    from app.preview_worker import OVERLAY_SIDE
    from caingan.assets import DEFAULT_WEIGHTS

    w = make_window(DEFAULT_WEIGHTS)
    wait_model(qtbot, w, timeout=60000)
    add_photo(qtbot, w, good_photo)
    add_photo(qtbot, w, second_photo)
    with qtbot.waitSignal(w.previewShown, timeout=30000,
                          check_params_cb=lambda r: r.pasted is not None and len(r.source_ids) == 2):
        w.paste_back_box.setChecked(True)
    r = w.last_result
    assert r.image.shape[0] > r.weights.shape[-1]          # the sizes that did not broadcast
    w.sources_used_box.setChecked(True)
    overlay = w.preview_pane.image()
    assert overlay.shape[1] == OVERLAY_SIDE and overlay.shape[0] > OVERLAY_SIDE * 1.1
    # While the box is ticked, every new render is shown as the overlay.
    for value in (0.6, 0.9):
        with qtbot.waitSignal(w.previewShown, timeout=30000):
            w.sliders.set_value("mouth_open", value)
        wait_quiet(qtbot, w, timeout=30000)
        now = w.preview_pane.image()
        assert now.shape == overlay.shape and not np.array_equal(now, overlay)
        overlay = now.copy()
    assert not errors(w)
    w.sources_used_box.setChecked(False)
    assert w.preview_pane.image().shape == w.last_result.display.shape


def test_sources_overlay_takes_a_face_and_weights_of_different_sizes():
    from app.preview_worker import SOURCE_COLOURS, sources_overlay

    face = np.full((512, 512, 3), 128, np.uint8)
    weights = np.zeros((2, 128, 128), np.float32)
    weights[0, :, :64] = weights[1, :, 64:] = 1            # left half from source 0
    crops = [np.zeros((128, 128, 3), np.uint8)] * 2
    out = sources_overlay(face, weights, crops, side=200)
    assert out.shape[1] == 200
    left, right = out[100, 20].astype(float), out[100, 180].astype(float)
    np.testing.assert_allclose(left, 0.45 * 128 + 0.55 * SOURCE_COLOURS[0], atol=1.5)
    np.testing.assert_allclose(right, 0.45 * 128 + 0.55 * SOURCE_COLOURS[1], atol=1.5)
    one = sources_overlay(face[:100, :100], weights[:1] * 0 + 1, crops[:1], side=200)
    assert one.shape[1] == 200                                # one source, face smaller than side


# ----------------------------------------------------------------------------- files

def test_save_result_and_landmarks_then_open_them(qtbot, make_window, good_photo, tmp_path):
    from caingan.media.images import load_image

    w = make_window()
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    w.sliders.set_value("mouth_open", 0.7)
    wait_quiet(qtbot, w)
    assert w.doc.is_dirty()
    assert w.save_result(tmp_path / "out.png")
    saved = load_image(tmp_path / "out.png")      # the face at its size in the photo
    s = w.last_result.image.shape[0]
    assert saved.shape == (w.target.output_side,) * 2 + (3,) and saved.shape[0] >= s
    import cv2
    assert np.abs(cv2.resize(saved, (s, s), interpolation=cv2.INTER_AREA).astype(int)
                  - w.last_result.image).mean() < 4
    assert w.save_result(tmp_path / "out.jpg") and (tmp_path / "out.jpg").stat().st_size > 0
    assert w.save_landmarks(tmp_path / "pose.json")
    assert not w.doc.is_dirty()
    doc = json.loads((tmp_path / "pose.json").read_text())
    assert doc["image_size"] == w.image_size and doc["version"] == 1 and len(doc["points"]) == 68

    edited = shown(w)
    w.reset_action.trigger()
    assert w.open_landmarks(tmp_path / "pose.json")
    np.testing.assert_allclose(shown(w), edited, atol=1e-3)
    assert w.sliders.params().mouth_open == pytest.approx(0.7)

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"points": [[1, 2]] * 10, "image_size": 64}))
    assert not w.open_landmarks(bad)
    assert "bad.json" in errors(w)[-1] and "68" in errors(w)[-1]
    np.testing.assert_allclose(shown(w), edited, atol=1e-3)   # nothing changed
    (tmp_path / "a_file").write_text("")
    assert not w.save_result(tmp_path / "a_file" / "x.png")   # its "folder" is a file
    assert "a_file" in errors(w)[-1]


def test_quit_with_unsaved_edits_asks_first(qtbot, make_window, good_photo, monkeypatch):
    w = make_window(confirm_discard=True)
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    w.sliders.set_value("smile", 0.3)
    answers = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Discard]
    asked = []
    monkeypatch.setattr(QMessageBox, "exec", lambda self: asked.append(1) or answers[len(asked) - 1])
    w.close()
    assert w.isVisible() and len(asked) == 1        # cancelled: still open, threads alive
    with qtbot.waitSignal(w.previewShown, timeout=20000):
        w.sliders.set_value("smile", 0.4)
    w.close()
    assert not w.isVisible() and len(asked) == 2


def test_main_parses_options():
    from app.run import parse_args
    a = parse_args(["--weights", "x.safetensors", "--device", "cpu", "a.png"])
    assert a.weights == "x.safetensors" and a.device == "cpu" and a.photos == ["a.png"]
    assert parse_args([]).weights.endswith("assets/caingan-warp.safetensors")
    with pytest.raises(SystemExit):
        parse_args(["--device", "tpu"])


# ----------------------------------------------------------------------------- layout, dialogs

def _fully_visible(widget, window) -> bool:
    """Shown, not squeezed below what its text needs, and inside the window."""
    from PySide6.QtCore import QPoint, QRect
    if not widget.isVisible() or widget.visibleRegion().isEmpty():
        return False
    hint = widget.sizeHint()
    top_left = widget.mapTo(window, QPoint(0, 0))
    inside = QRect(QPoint(0, 0), window.size()).contains(QRect(top_left, widget.size()))
    return inside and widget.width() >= hint.width() and widget.height() >= hint.height() - 2 \
        and widget.visibleRegion().boundingRect() == widget.rect()


def test_everything_fits_a_1024x640_screen(qtbot, make_window, good_photo):
    from PySide6.QtWidgets import QPushButton

    w = make_window()
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    w.resize(1024, 640)
    qtbot.waitUntil(lambda: w.width() == 1024 and w.height() == 640, timeout=5000)
    assert w.minimumSizeHint().width() <= 1024
    assert "Target" in w.editor_title.text()
    assert _fully_visible(w.editor_title, w)
    edit = next(b for b in w.sources_panel.findChildren(QPushButton) if b.text() == "Edit this face")
    assert _fully_visible(edit, w)
    for box in (w.paste_back_box, w.sources_used_box):
        assert _fully_visible(box, w), box.text()


def test_file_dialogs_start_beside_the_photo_and_saved_files_are_readable(
        qtbot, make_window, good_photo, tmp_path, monkeypatch):
    import os
    import shutil

    from PySide6.QtWidgets import QFileDialog

    folder = tmp_path / "my photos"
    folder.mkdir()
    photo = shutil.copy(good_photo, folder / good_photo.name)
    w = make_window()
    wait_model(qtbot, w)
    asked = []

    def fake(kind, answer=""):
        def dialog(parent, caption, start="", *a, **k):
            asked.append((kind, start))
            return ([] if kind == "open_many" else answer), ""
        return dialog

    monkeypatch.setattr(QFileDialog, "getOpenFileNames", fake("open_many"))
    w.add_photos_dialog()                                   # no photo yet: not the cwd
    assert asked[-1][1] and os.path.realpath(asked[-1][1]) != os.path.realpath(os.getcwd())
    add_photo(qtbot, w, photo)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", fake("save", str(out / "r.png")))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", fake("open"))
    w.save_result_dialog()
    assert asked[-1] == ("save", str(folder / f"{photo.stem}-edited.png"))
    w.open_landmarks_dialog()
    assert asked[-1][1] == str(out)                         # where the user last went
    old = os.umask(0o022)
    try:
        assert w.save_result(out / "r.png") and w.save_landmarks(out / "pose.json")
    finally:
        os.umask(old)
    for name in ("r.png", "pose.json"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name


def test_busy_machine_gets_fewer_model_threads(qtbot, make_window, good_photo):
    from app.workers import ThreadBudget, interactive_threads

    assert interactive_threads(0.0, cpus=2) == 2
    assert interactive_threads(1.0, cpus=2) == 1           # one core taken by another process
    assert interactive_threads(0.3, cpus=2) == 2           # light background noise
    assert interactive_threads(5.0, cpus=2) == 1           # never below one
    assert interactive_threads(1.0, cpus=16) == 8          # interactive work is capped

    class Load:
        value = 0.0

        def others(self):
            return self.value

    load, set_to = Load(), []
    budget = ThreadBudget(every=0.0, set_threads=set_to.append, load=load)
    budget.apply()
    load.value = 3.0
    budget.apply()
    assert set_to[-1] == 1 and budget.threads == 1

    w = make_window()
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    assert w.preview.stats()["threads"] >= 1


# ----------------------------------------------------------------------------- small things

def test_the_preview_says_the_sample_face_is_loading(qtbot, tiny_weights, detector):
    """Until the sample photo's face is found, the preview says so, not "Add a source photo"."""
    from app.main_window import MainWindow

    gate = threading.Event()

    class SlowDetector:                     # holds the sample's detection until the gate opens
        backend = detector.backend

        def detect_all(self, image):
            gate.wait(30)
            return detector.detect_all(image)

        def detect(self, image):
            return detector.detect(image)

    w = MainWindow(tiny_weights, "cpu", detector_factory=SlowDetector, confirm_discard=False)
    qtbot.addWidget(w)
    w.show()
    try:
        wait_model(qtbot, w)
        qtbot.wait(100)                     # whatever the model's arrival set off has run
        assert w.preview_pane.message() == "Loading sample face…"
        with qtbot.waitSignal(w.previewShown, timeout=30000):
            gate.set()
        assert w.preview_pane.message() == "" and w.preview_pane.image() is not None
    finally:
        gate.set()
        w.shutdown()


def test_sliders_reset_to_zero_leave_nothing_to_save(qtbot, make_window, good_photo,
                                                      second_photo, monkeypatch):
    w = make_window(confirm_discard=True)
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    b = add_photo(qtbot, w, second_photo)
    try:
        _reset_then_edit_another_face(qtbot, w, b, monkeypatch)
    finally:
        w.confirm_discard = False               # closing at the end asks nothing, pass or fail


def _reset_then_edit_another_face(qtbot, w, b, monkeypatch):
    from PySide6.QtWidgets import QPushButton

    w.sliders.set_value("smile", 0.4)
    w.sliders.set_value("yaw", 12)
    assert w.doc.is_dirty() and w.windowTitle().endswith("*")
    qtbot.mouseClick(w.sliders.reset_button, Qt.MouseButton.LeftButton)
    assert w.sliders.params().is_neutral()
    assert not w.doc.is_dirty() and not w.windowTitle().endswith("*")
    asked = []
    monkeypatch.setattr(QMessageBox, "exec",
                        lambda box: asked.append(box.text()) or QMessageBox.StandardButton.Cancel)
    w.sources_panel.select(b)
    edit = next(x for x in w.sources_panel.findChildren(QPushButton) if x.text() == "Edit this face")
    qtbot.mouseClick(edit, Qt.MouseButton.LeftButton)
    assert asked == [] and w.target.job_id == b
    w.sliders.set_value("smile", 0.2)                   # a real edit is still asked about
    w.sources_panel.select(next(i for i in w.source_ids() if i != b))
    qtbot.mouseClick(edit, Qt.MouseButton.LeftButton)
    assert len(asked) == 1 and w.target.job_id == b


def test_messages_name_files_by_name_with_the_full_path_as_details(
        qtbot, make_window, good_photo, corrupt_photo, faceless_photo, tmp_path):
    w = make_window()
    wait_model(qtbot, w)
    failed = []
    w.sourceFailed.connect(lambda i, msg: failed.append(msg))
    w.add_files([str(corrupt_photo), str(faceless_photo)])
    qtbot.waitUntil(lambda: len(failed) == 2, timeout=30000)
    add_photo(qtbot, w, good_photo)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text(json.dumps({"points": [[1, 2]] * 10, "image_size": 64}))
    assert not w.open_landmarks(bad_json)
    (tmp_path / "a_file").write_text("")
    assert not w.save_result(tmp_path / "a_file" / "x.png")
    assert not w.save_landmarks(tmp_path / "a_file" / "pose.json")
    assert w.save_result(tmp_path / "out.png")

    cases = [(corrupt_photo, "error"), (faceless_photo, "error"), (bad_json, "error"),
             (tmp_path / "a_file" / "x.png", "error"), (tmp_path / "a_file" / "pose.json", "error"),
             (tmp_path / "out.png", "info")]
    history = [m for m in w.notifier.history if m.level in ("error", "info")]
    for path, level in cases:
        msg = next(m for m in history if m.level == level and path.name in m.text)
        assert str(path.parent) not in msg.text, msg.text       # the name, never the path
        assert str(path.absolute()) in msg.details.splitlines(), (msg.text, msg.details)
    for path in (corrupt_photo, faceless_photo):                # a photo: "name: problem"
        msg = next(m for m in history if path.name in m.text)
        assert msg.text.startswith(f"{path.name}: ")
    # The full paths are one hover (banner) or one dialog (View ▸ Messages) away.
    assert str(tmp_path / "out.png") in w.banner.toolTip()
    from app.notifications import MessagesDialog
    dialog = MessagesDialog(w.notifier, w)
    log = dialog.text.toPlainText()
    assert str(corrupt_photo) in log and str(bad_json) in log
    dialog.close()
