"""EditDocument, the edit behind the editor (base + sliders, undo/redo), tested without any
widget or QApplication; then the window keeping its sliders and document in step, and refusing
bad landmark files with a message."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from app.document import EditDocument, EditState
from caingan.face import landmark_edit as le

from .conftest import wait_model

FACE = le.mean_face(128)
NAN = math.nan


class Recorder:
    def __init__(self, doc: EditDocument):
        self.changed = self.replaced = 0
        doc.changed.connect(self._changed)
        doc.paramsReplaced.connect(self._replaced)

    def _changed(self):
        self.changed += 1

    def _replaced(self):
        self.replaced += 1


@pytest.fixture
def doc():
    d = EditDocument()
    d.start(FACE)
    return d


def test_document_needs_no_qapplication():
    code = ("from PySide6.QtCore import QCoreApplication\n"
            "from app.document import EditDocument\n"
            "from caingan.face.landmark_edit import EditParams, mean_face\n"
            "d = EditDocument(); d.start(mean_face(128)); d.set_params(EditParams(smile=0.5))\n"
            "d.undo_stack.undo(); assert d.state.params == EditParams()\n"
            "assert QCoreApplication.instance() is None\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_start_shows_the_points_with_a_clean_history():
    d = EditDocument()
    rec = Recorder(d)
    assert not d.active and d.shown_points() is None
    d.start(FACE)
    assert d.active and not d.is_dirty() and d.undo_stack.count() == 0
    np.testing.assert_array_equal(d.shown_points(), FACE)
    assert rec.changed == 1 and rec.replaced == 1
    assert not d.state.base.flags.writeable   # the state cannot be mutated behind its back
    d.clear()
    assert not d.active and d.shown_points() is None


def test_a_whole_drag_is_one_undo_step(doc):
    rec = Recorder(doc)
    doc.begin_drag(30, part=False, symmetric=False)
    assert doc.dragging
    for t in (1, 2, 3):
        doc.drag_to(FACE[30, 0] + t, FACE[30, 1] + 2 * t)
    doc.end_drag()
    assert rec.changed >= 3 and doc.undo_stack.count() == 1 and doc.is_dirty()
    assert doc.undo_stack.undoText() == "Move point"
    moved = np.flatnonzero(np.abs(doc.shown_points() - FACE).max(1) > 1e-4)
    assert moved.tolist() == [30]
    np.testing.assert_allclose(doc.shown_points()[30], FACE[30] + (3, 6), atol=1e-4)
    doc.undo_stack.undo()
    np.testing.assert_array_equal(doc.shown_points(), FACE)
    assert not doc.is_dirty()
    doc.undo_stack.redo()
    np.testing.assert_allclose(doc.shown_points()[30], FACE[30] + (3, 6), atol=1e-4)


def test_part_drag_moves_the_group_and_cancel_restores(doc):
    doc.begin_drag(19, part=True, symmetric=False)
    doc.drag_to(FACE[19, 0], FACE[19, 1] - 4)
    doc.end_drag()
    moved = np.flatnonzero(np.abs(doc.shown_points() - FACE).max(1) > 1e-4)
    assert moved.tolist() == le.RIGHT_BROW.tolist()
    assert doc.undo_stack.undoText() == "Move part"
    before = doc.shown_points().copy()
    doc.begin_drag(40, part=False, symmetric=False)
    doc.drag_to(10, 10)
    doc.cancel_drag()
    doc.end_drag()   # a release after Esc adds nothing
    np.testing.assert_array_equal(doc.shown_points(), before)
    assert doc.undo_stack.count() == 1


def test_drag_of_a_face_without_eyes_still_moves_the_point():
    d = EditDocument()
    pts = FACE.copy()
    pts[36:48] = np.nan
    d.start(pts)
    d.begin_drag(30, part=False, symmetric=True)
    d.drag_to(50.0, 60.0)
    d.end_drag()
    np.testing.assert_allclose(d.shown_points()[30], (50, 60))


def test_slider_press_to_release_is_one_step_and_keyboard_steps_merge(doc):
    rec = Recorder(doc)
    doc.begin_slider()
    for v in (0.1, 0.2, 0.3):
        doc.set_params(le.EditParams(smile=v))
    doc.end_slider()
    assert doc.undo_stack.count() == 1 and rec.replaced == 0   # the sliders moved themselves
    np.testing.assert_allclose(doc.shown_points(), le.apply_sliders(FACE, le.EditParams(smile=0.3)))
    # keyboard steps on one slider merge; another slider is a new step
    for v in (5.0, 10.0, 15.0):
        doc.set_params(le.EditParams(smile=0.3, yaw=v), merge_key=4)
    assert doc.undo_stack.count() == 2
    doc.set_params(le.EditParams(smile=0.3, yaw=15.0, roll=5.0), merge_key=6)
    assert doc.undo_stack.count() == 3
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert doc.state.params == le.EditParams(smile=0.3)
    assert rec.replaced == 6   # each keyboard step and undo re-syncs the sliders


def test_sliders_stay_on_top_of_drags(doc):
    params = le.EditParams(mouth_open=0.5, yaw=20)
    doc.set_params(params)
    doc.begin_drag(38, part=False, symmetric=False)
    doc.drag_to(40.0, 30.0)
    doc.end_drag()
    np.testing.assert_allclose(doc.shown_points()[38], (40, 30), atol=0.05)   # under the cursor
    dragged_base = doc.state.base.copy()
    doc.set_params(le.EditParams())
    np.testing.assert_array_equal(doc.shown_points(), dragged_base)


def test_reset_and_replace(doc):
    doc.set_params(le.EditParams(brows=0.5))
    doc.begin_drag(8, part=False, symmetric=False)
    doc.drag_to(60.0, 120.0)
    doc.end_drag()
    doc.reset()
    assert doc.undo_stack.undoText() == "Reset" and doc.undo_stack.count() == 3
    np.testing.assert_array_equal(doc.shown_points(), FACE)
    doc.reset()                                   # already there: no extra step
    doc.replace(EditState.of(FACE), "Same")
    assert doc.undo_stack.count() == 3
    doc.replace(EditState.of(FACE + 1, le.EditParams(smile=0.2)), "Open landmarks")
    assert doc.undo_stack.undoText() == "Open landmarks" and doc.state.params.smile == 0.2
    doc.mark_saved()
    assert not doc.is_dirty()
    doc.undo_stack.undo()
    assert doc.is_dirty()


def test_unsaved_edits_are_judged_by_the_state_not_by_the_steps(doc):
    """Steps that lead back to what was saved (or started from) leave nothing unsaved."""
    doc.begin_slider()
    doc.set_params(le.EditParams(smile=0.4, yaw=10.0))
    doc.end_slider()
    assert doc.is_dirty()
    doc.begin_slider()                            # Reset sliders: all back to 0, one step
    doc.set_params(le.EditParams())
    doc.end_slider()
    assert doc.undo_stack.count() == 2 and not doc.is_dirty()
    doc.undo_stack.undo()
    assert doc.is_dirty()
    doc.mark_saved()                              # saved with smile 0.4
    assert not doc.is_dirty()
    doc.undo_stack.redo()
    assert doc.is_dirty()                         # differs from what was saved
    doc.undo_stack.undo()
    assert not doc.is_dirty()


@pytest.mark.parametrize("bad", [NAN, math.inf, -math.inf])
def test_non_finite_slider_values_are_ignored(doc, bad):
    doc.set_params(le.EditParams(smile=0.4))
    rec = Recorder(doc)
    before = doc.state
    doc.set_params(le.EditParams(smile=0.4, yaw=bad))
    doc.set_params(le.EditParams(smile=bad), merge_key=1)
    doc.begin_slider()
    doc.set_params(le.EditParams(smile=0.4, roll=bad))
    doc.end_slider()
    assert doc.state is before and doc.undo_stack.count() == 1
    assert np.isfinite(doc.shown_points()).all()
    assert rec.changed == 0 and rec.replaced == 3   # views showing the bad value re-sync
    with pytest.raises(ValueError, match="finite"):
        doc.replace(EditState.of(FACE, le.EditParams(yaw=bad)), "Open")
    with pytest.raises(ValueError, match="finite"):
        EditDocument().start(FACE, le.EditParams(pitch=bad))
    assert doc.state is before


def test_out_of_range_slider_values_are_clamped(doc):
    doc.set_params(le.EditParams(yaw=90.0, smile=-3.0))
    assert doc.state.params == le.EditParams(yaw=45.0, smile=-1.0)


# ----------------------------------------------------------------------------- the window

def _errors(w) -> list[str]:
    return [m.text for m in w.notifier.history if m.level == "error"]


def test_window_sliders_and_document_agree_after_nan(qtbot, make_window):
    w = make_window()
    wait_model(qtbot, w)
    w.doc.start(le.mean_face(w.image_size))
    w.sliders.set_value("smile", 0.5)
    assert w.doc.state.params.smile == pytest.approx(0.5)
    w.doc.set_params(le.EditParams(smile=0.5, yaw=NAN))   # e.g. a script or a broken caller
    w.sliders.set_value("yaw", NAN)
    w.sliders.set_value("pitch", math.inf)
    assert w.sliders.params() == w.doc.state.params == le.EditParams(smile=0.5)
    assert w.sliders.sliders["yaw"].value() == 0
    assert np.isfinite(w.doc.shown_points()).all()
    w.doc.set_params(le.EditParams(yaw=90.0))   # out of range: clamped, and the slider shows it
    assert w.sliders.params() == w.doc.state.params == le.EditParams(yaw=45.0)


def _bad_landmark_files(tmp_path, size):
    pts = le.mean_face(size).tolist()
    keys = {"format": "caingan-keyframes", "version": 1, "image_size": size, "fps": 25,
            "keyframes": [{"frame": 0, "points": pts}]}
    seq = {"format": "caingan-landmark-sequence", "version": 1, "image_size": size,
           "frames": [pts]}
    files = {
        "version_str.json": (json.dumps({**keys, "version": "1"}), "'version'"),
        "version_null.json": (json.dumps({**keys, "version": None}), "'version'"),
        "fps_abc.json": (json.dumps({**keys, "fps": "abc"}), "'fps'"),
        "fps_list.json": (json.dumps({**keys, "fps": [25]}), "'fps'"),
        "deep.json": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        "negative_size.json": (json.dumps({**keys, "image_size": -size}), "'image_size'"),
        "negative_size_seq.json": (json.dumps({**seq, "image_size": -size}), "'image_size'"),
        "all_null.json": (json.dumps({**keys, "keyframes": [{"frame": 0, "points":
                                                             [[None, None]] * 68}]}), "missing"),
        "all_null_seq.json": (json.dumps({**seq, "frames": [[[None, None]] * 68]}), "missing"),
        "nan.json": (json.dumps({**seq, "frames": [[[NAN, 1.0]] + pts[1:]]}), "finite"),
    }
    for name, (text, _) in files.items():
        (tmp_path / name).write_text(text)
    return {tmp_path / name: expect for name, (text, expect) in files.items()}


def test_open_landmarks_refuses_bad_files_with_a_message(qtbot, make_window, tmp_path,
                                                         monkeypatch, capfd):
    from PySide6.QtWidgets import QFileDialog

    w = make_window()
    wait_model(qtbot, w)
    w.doc.start(le.mean_face(w.image_size))
    w.sliders.set_value("smile", 0.3)
    before, steps = w.doc.state, w.doc.undo_stack.count()
    capfd.readouterr()
    for path, expect in _bad_landmark_files(tmp_path, w.image_size).items():
        # Through the menu, as a user would: the file dialog answers with the bad file.
        monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, p=path, **k: (str(p), ""))
        w.open_lm_action.trigger()
        msg = _errors(w)[-1]
        assert path.name in msg and expect in msg, msg
        assert w.banner.isVisible() and msg in w.banner.text()
        assert w.doc.state is before and w.doc.undo_stack.count() == steps   # unchanged
        assert not w.open_landmarks(path)
    assert "Traceback" not in capfd.readouterr().err
    # A good file still opens, scaled by pixel centres from its crop size to the model's.
    from caingan.face import landmark_file as lmf
    pose = le.mean_face(2 * w.image_size)
    lmf.save_landmarks(tmp_path / "good.json", pose, 2 * w.image_size)
    assert w.open_landmarks(tmp_path / "good.json")
    np.testing.assert_allclose(w.doc.shown_points(), (pose + 0.5) / 2 - 0.5, atol=1e-4)
    assert w.doc.undo_stack.count() == steps + 1
