"""File ▸ Export frames…: keyframes, a driving video, cancel and errors, on a tiny random model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtWidgets import QProgressDialog, QPushButton

from caingan.face import landmark_edit as le
from caingan.pipeline.export import FRAME_NAME, MANIFEST_NAME, TARGET_KEY

from .conftest import add_photo, wait_model


@pytest.fixture(scope="module")
def clip(shared_data, clip_rows) -> Path:
    row = next(r for r in clip_rows if int(r["frames"]) >= 200)
    return shared_data / row["path"]


@pytest.fixture
def dialog(qtbot, make_window, good_photo):
    w = make_window()
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    w.export_action.trigger()                       # File ▸ Export frames…
    dlg = w.export_dialog
    assert dlg is not None and dlg.isVisible()
    return w, dlg


def _frames(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("frame_*.png"))


def _formats(dlg, *wanted):
    for name, box in dlg.format_boxes.items():
        box.setChecked(name in wanted)


def _export(qtbot, dlg, timeout=60000):
    with qtbot.waitSignal(dlg.exportFinished, timeout=timeout) as blocker:
        dlg.export_button.click()
    return blocker.args[0]


def test_editor_keyframes_export_n_frames(qtbot, dialog, tmp_path):
    w, dlg = dialog
    assert dlg.keys_label.text() == "No keyframes yet"
    dlg.add_key_button.click()                          # the detected pose
    w.doc.set_params(le.EditParams(mouth_open=0.8, yaw=15.0))
    dlg.add_key_button.click()                          # mouth open, head turned
    dlg.gap_spin.setValue(4)
    dlg.interp_box.setCurrentText("linear")
    assert dlg.keys_label.text() == "2 keyframes, 5 frames" and dlg.keys_radio.isChecked()
    _formats(dlg, "png", "gif")
    out = tmp_path / "keys"
    dlg.out_edit.setText(str(out))
    res = _export(qtbot, dlg)

    assert not res.cancelled and res.frames == 5
    assert _frames(out) == [FRAME_NAME.format(i) for i in range(5)]
    with Image.open(out / "video.gif") as gif:
        assert gif.n_frames == 5 and gif.size == (w.image_size, w.image_size)
    assert not (out / "video.mp4").exists()
    hashes = [Image.open(out / n).info[TARGET_KEY] for n in _frames(out)]
    assert len(set(hashes)) == 5                      # every frame is a different pose
    assert "Exported 5 frames" in dlg.last_message and "video.gif" in dlg.last_message
    assert dlg.message_box.isVisible() and dlg.message_box.text() == dlg.last_message
    assert dlg.progress is None and dlg.export_button.isEnabled()

    # The keyframes can be saved for caingan-export --keyframes.
    assert dlg.save_keyframes(tmp_path / "k.json")
    doc = json.loads((tmp_path / "k.json").read_text())
    assert [k["frame"] for k in doc["keyframes"]] == [0, 4] and doc["image_size"] == w.image_size
    dlg.clear_keys_button.click()
    assert dlg.keyframe_poses == [] and dlg.keys_label.text() == "No keyframes yet"


def test_driving_video_export_writes_n_files(qtbot, dialog, clip, tmp_path):
    import cv2

    w, dlg = dialog
    dlg.video_radio.setChecked(True)
    dlg.video_edit.setText(str(clip))
    dlg.max_spin.setValue(6)
    _formats(dlg, "png", "mp4")
    out = tmp_path / "video"
    dlg.out_edit.setText(str(out))
    res = _export(qtbot, dlg)
    assert not res.cancelled and _frames(out) == [FRAME_NAME.format(i) for i in range(6)]
    cap = cv2.VideoCapture(str(out / "video.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    cap.release()
    assert "Exported 6 frames" in dlg.last_message and clip.name in dlg.last_message


@pytest.mark.slow
def test_cancel_keeps_complete_frames_and_export_again_continues(qtbot, dialog, clip, tmp_path):
    w, dlg = dialog
    dlg.video_edit.setText(str(clip))
    dlg.max_spin.setValue(200)
    _formats(dlg, "png")
    out = tmp_path / "cancel"
    dlg.out_edit.setText(str(out))
    with qtbot.waitSignal(dlg.exportFinished, timeout=120000) as blocker:
        dlg.export_button.click()
        assert dlg.progress is not None and not dlg.export_button.isEnabled()
        qtbot.waitUntil(lambda: dlg.progress is None or dlg.progress.value() >= 8, timeout=60000)
        assert dlg.progress is not None, "the export finished before it could be cancelled"
        dlg.progress.findChild(QPushButton).click()   # the progress dialog's Cancel button
    res = blocker.args[0]
    assert res.cancelled and 8 <= res.frames < 200
    names = _frames(out)
    assert names == [FRAME_NAME.format(i) for i in range(res.frames)]
    for n in names:
        with Image.open(out / n) as im:
            im.verify()
    assert not [p for p in out.iterdir() if "tmp" in p.name]
    assert json.loads((out / MANIFEST_NAME).read_text())["status"] == "cancelled"
    assert "cancelled after" in dlg.last_message and "continue" in dlg.last_message

    again = _export(qtbot, dlg, timeout=120000)
    assert not again.cancelled and again.frames == 200
    assert again.reused == res.frames and again.generated == 200 - res.frames


def test_unwritable_folder_is_shown_and_nothing_is_lost(qtbot, dialog, tmp_path):
    w, dlg = dialog
    dlg.add_current_pose()
    blocker_file = tmp_path / "a_file"
    blocker_file.write_text("x")
    target = str(blocker_file / "out")
    dlg.out_edit.setText(target)
    with qtbot.waitSignal(dlg.exportFailed, timeout=60000) as blocker:
        dlg.export_button.click()
    assert "cannot create output folder" in blocker.args[0]
    assert "Export failed" in dlg.status_label.text() and dlg.message_box.isVisible()
    assert any("Export failed" in m.text for m in w.notifier.history if m.level == "error")
    # The dialog keeps everything the user set, and can export once the folder is fixed.
    assert dlg.isVisible() and dlg.out_edit.text() == target and len(dlg.keyframe_poses) == 1
    assert dlg.export_button.isEnabled() and dlg.progress is None
    dlg.out_edit.setText(str(tmp_path / "fixed"))
    _formats(dlg, "png")
    res = _export(qtbot, dlg)
    assert res.frames == 1 and _frames(tmp_path / "fixed") == [FRAME_NAME.format(0)]


def test_nothing_to_export_is_explained(qtbot, make_window, tmp_path):
    w = make_window()
    wait_model(qtbot, w)
    dlg = w.open_export_dialog()
    dlg.out_edit.setText(str(tmp_path / "o"))
    assert dlg.start_export() is False
    assert "Add a source photo" in dlg.status_label.text() and dlg.progress is None
    assert not dlg.add_current_pose()
    assert not (tmp_path / "o").exists()


class RecordingProgress(QProgressDialog):
    """The dialog's progress window, remembering every label it showed."""

    labels: list[str] = []

    def setLabelText(self, text: str) -> None:
        RecordingProgress.labels.append(text)
        super().setLabelText(text)


def test_encoding_progress_follows_the_frames(qtbot, dialog, monkeypatch, tmp_path):
    import app.export_dialog as export_dialog

    monkeypatch.setattr(export_dialog, "QProgressDialog", RecordingProgress)
    RecordingProgress.labels = []
    w, dlg = dialog
    dlg.add_key_button.click()
    w.doc.set_params(le.EditParams(mouth_open=0.8))
    dlg.add_key_button.click()
    dlg.gap_spin.setValue(5)
    _formats(dlg, "mp4", "gif")
    dlg.out_edit.setText(str(tmp_path / "enc"))
    res = _export(qtbot, dlg)
    assert res.frames == 6 and (tmp_path / "enc" / "video.mp4").is_file()
    labels = RecordingProgress.labels
    assert "Exported 6 of 6 frames…" in labels
    encoding = [t for t in labels if t.startswith("Encoding")]
    assert encoding == [f"Encoding MP4 and GIF… {i}/6" for i in range(1, 7)], labels
    assert labels.index("Exported 6 of 6 frames…") < labels.index(encoding[0])


def test_bad_frame_rates_are_refused_before_rendering(qtbot, dialog, tmp_path):
    from caingan.face.landmark_edit import mean_face

    w, dlg = dialog
    doc = {"format": "caingan-landmark-sequence", "version": 1, "image_size": 128,
           "fps": 1e9, "frames": [mean_face(128.0).tolist()] * 3}
    (tmp_path / "seq.json").write_text(json.dumps(doc))
    dlg.file_radio.setChecked(True)
    dlg.file_edit.setText(str(tmp_path / "seq.json"))
    _formats(dlg, "png", "mp4")
    dlg.out_edit.setText(str(tmp_path / "o"))
    with qtbot.waitSignal(dlg.exportFailed, timeout=60000) as blocker:
        dlg.export_button.click()
    assert "fps" in blocker.args[0] and "seq.json" in blocker.args[0]
    assert not (tmp_path / "o").exists() or _frames(tmp_path / "o") == []
    # A frame rate typed into the dialog is checked there, before the export starts.
    assert dlg.fps_spin.maximum() == 240
    dlg.fps_spin.setValue(0.05)
    assert not dlg.start_export() and dlg.progress is None
    assert "Frame rate" in dlg.status_label.text() and "0.1" in dlg.status_label.text()
