"""Which photos the editor mixes: photos of another person than the edited face are left out
(and marked at once) unless the user uses them anyway; removing the photo being edited."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QPushButton

from .conftest import wait_model, wait_quiet


@pytest.fixture(scope="module")
def other_person(stills, good_photo):
    """A photo of someone else than good_photo's person (each stills folder is one person)."""
    return next(p for p in stills if p.parent != good_photo.parent)


def added(qtbot, w, path, timeout=30000) -> int:
    with qtbot.waitSignal(w.sourceAdded, timeout=timeout) as got:
        w.add_files([str(path)])
    return got.args[0]


def used(w) -> tuple:
    return w.current_sources().ids


def click(qtbot, button) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


@pytest.mark.slow
def test_another_persons_photo_is_marked_at_once_and_left_out_until_used_anyway(
        qtbot, make_window, good_photo, second_photo, other_person):
    w = make_window()
    wait_model(qtbot, w)
    snapshots = []
    w.sourcesChanged.connect(snapshots.append)
    a = added(qtbot, w, good_photo)
    b = added(qtbot, w, second_photo)
    c = added(qtbot, w, other_person)
    panel = w.sources_panel

    # Said at once, in the panel and as a message — not only after Personalize.
    assert "another person — not used" in panel.item_text(c)
    assert "another person" not in panel.item_text(a) + panel.item_text(b)
    warning = w.notifier.last("warning").text
    assert other_person.name in warning and "Use anyway" in warning
    assert good_photo.name in warning            # the face being edited is the reference
    assert good_photo.name not in warning.split(" like another person")[0]
    # What the model gets (preview, reenactment window, export, Personalize) leaves it out.
    assert used(w) == (a, b) and snapshots[-1].ids == (a, b)
    wait_quiet(qtbot, w)
    assert w.last_result.source_ids == (a, b) and len(w.last_result.weights) == 2

    # Use anyway (the panel's button on the selected photo), and back.
    panel.select(c)
    assert panel.use_button.isEnabled() and not panel.use_button.isChecked()
    click(qtbot, panel.use_button)
    assert "another person — used anyway" in panel.item_text(c)
    assert used(w) == (a, b, c) and snapshots[-1].ids == (a, b, c)
    qtbot.waitUntil(lambda: w.last_result.source_ids == (a, b, c), timeout=20000)
    assert panel.use_button.isChecked()
    click(qtbot, panel.use_button)
    assert "another person — not used" in panel.item_text(c) and used(w) == (a, b)
    qtbot.waitUntil(lambda: w.last_result.source_ids == (a, b), timeout=20000)
    panel.select(a)
    assert not panel.use_button.isEnabled()      # nothing to decide for the edited person

    # Editing the other person's face: now the first person's photos are the other ones.
    panel.select(c)
    edit = next(x for x in panel.findChildren(QPushButton) if x.text() == "Edit this face")
    click(qtbot, edit)
    assert w.target.job_id == c and used(w) == (c,)
    assert "another person — not used" in panel.item_text(a)
    assert "another person — not used" in panel.item_text(b)
    assert "another person" not in panel.item_text(c)
    qtbot.waitUntil(lambda: w.last_result.source_ids == (c,), timeout=20000)


@pytest.mark.slow
def test_removing_the_edited_photo_edits_the_next_photo_of_that_person(
        qtbot, make_window, good_photo, second_photo, other_person, monkeypatch):
    w = make_window(confirm_discard=True)
    wait_model(qtbot, w)
    a = added(qtbot, w, good_photo)
    c = added(qtbot, w, other_person)
    b = added(qtbot, w, second_photo)
    try:
        _remove_the_edited_photos(qtbot, w, a, b, c, good_photo, second_photo, monkeypatch)
    finally:
        w.confirm_discard = False               # closing at the end asks nothing, pass or fail


def _remove_the_edited_photos(qtbot, w, a, b, c, good_photo, second_photo, monkeypatch):
    assert w.target.job_id == a
    w.sliders.set_value("smile", 0.5)
    wait_quiet(qtbot, w)
    answers, asked = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Discard], []
    monkeypatch.setattr(QMessageBox, "exec",
                        lambda box: asked.append(box.text()) or answers[len(asked) - 1])

    # Unsaved edits: asked first; Cancel keeps everything as it was.
    assert not w.remove_sources([a])
    assert len(asked) == 1 and good_photo.name in asked[0]
    assert w.sources_panel.ids() == [a, c, b] and w.target.job_id == a
    # Discard: the photo goes, and the next photo of the same person (b, not c) is edited.
    assert w.remove_sources([a])
    assert w.sources_panel.ids() == [c, b] and w.target.job_id == b
    np.testing.assert_allclose(w.doc.shown_points(), w.sources[b].crop.points, atol=1e-4)
    assert not w.doc.is_dirty() and w.sliders.params().smile == 0.0
    assert w.editor.image_item.image is not None
    info = w.notifier.last("info").text
    assert good_photo.name in info and second_photo.name in info
    assert used(w) == (b,)                        # c is still another person than b
    qtbot.waitUntil(lambda: w.last_result.source_ids == (b,)
                    and np.allclose(w.last_result.points, w.sources[b].crop.points, atol=1e-3),
                    timeout=20000)

    # No edits: no question. The only photo left is another person's: it is edited now.
    assert w.remove_sources([b]) and len(asked) == 2
    assert w.target.job_id == c and used(w) == (c,)
    assert "another person" not in w.sources_panel.item_text(c)
    # The last photo: the editor clears and says what to do.
    assert w.remove_sources([c])
    assert w.target is None and not w.doc.active and w.editor.points() is None
    assert w.preview_pane.message() == "Add a source photo to start."
    assert w.preview_pane.image() is None and w.last_result is None
    assert w.current_sources() is None
    assert not w.windowTitle().endswith("*")


FRESH_APP = r"""
import sys, time
from app.qt_env import prepare_qt_environment
prepare_qt_environment()
from PySide6.QtWidgets import QApplication
app = QApplication([])
from app.detect_worker import DetectWorker, SourceJob, default_detector_factory
from app.workers import WorkerThread
worker = DetectWorker(default_detector_factory)     # as the editor: the detector is made there
thread = WorkerThread(worker, "detect")
got = []
worker.detected.connect(got.append)
worker.failed.connect(lambda *a: got.append(a))
for i, path in enumerate(sys.argv[1:]):
    worker.submit(SourceJob(i, path, 128, path=path))
t0 = time.time()
while len(got) < len(sys.argv) - 1 and time.time() - t0 < 60:
    app.processEvents()
    time.sleep(0.01)
print(sum(getattr(s, "descriptor", None) is not None for s in got), "described", flush=True)
thread.stop()
"""


@pytest.mark.slow
def test_a_fresh_editor_describes_faces_on_its_detection_thread(good_photo, second_photo):
    """dlib imported first on the detection thread hung the first face descriptor (pybind11
    kept a Python thread state that PySide had dropped). Only a fresh process shows it: here,
    the test session imported dlib long ago on its main thread."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", FRESH_APP, str(good_photo), str(second_photo)],
                         capture_output=True, text=True, timeout=90, env=env,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "2 described" in out.stdout, (out.stdout, out.stderr[-2000:])
