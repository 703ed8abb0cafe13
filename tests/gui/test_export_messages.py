"""The export dialog names a bad file as the editor does: by its name, the full path as details."""

from __future__ import annotations

from .conftest import add_photo, wait_model


def test_a_bad_driving_video_is_named_by_its_name(qtbot, make_window, good_photo, tmp_path):
    w = make_window()
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    w.export_action.trigger()
    dlg = w.export_dialog
    video = tmp_path / "driving" / "broken.mp4"
    video.parent.mkdir()
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"not really a video" * 20)
    dlg.video_radio.setChecked(True)
    dlg.video_edit.setText(str(video))
    dlg.out_edit.setText(str(tmp_path / "out"))
    with qtbot.waitSignal(dlg.exportFailed, timeout=60000):
        dlg.export_button.click()
    for text in (dlg.status_label.text(), dlg.last_message, w.notifier.last("error").text):
        assert "broken.mp4" in text and str(video.parent) not in text, text
    assert str(video) in dlg.status_label.toolTip()
    assert str(video) in w.notifier.last("error").details.splitlines()
    assert str(video) in dlg.message_box.detailedText()

    # Saving keyframes into a "folder" that is a file: named, with its path as the tooltip.
    dlg.add_key_button.click()
    (tmp_path / "a_file").write_text("")
    assert not dlg.save_keyframes(tmp_path / "a_file" / "keys.json")
    status = dlg.status_label.text()
    assert status.startswith("Could not save keys.json: ") and str(tmp_path) not in status
    assert str(tmp_path / "a_file" / "keys.json") in dlg.status_label.toolTip()
