"""The live reenactment window: a real clip plays like a webcam and drives the editor's face."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from .conftest import add_photo, wait_model

REAL, BLANK = 14, 12          # frames of the real clip, then blank frames, then real again


@pytest.fixture(scope="module")
def mixed_clip(tmp_path_factory, shared_data, clip_rows) -> Path:
    """A short MP4 of real talking-head frames with a run of blank (faceless) frames inside."""
    import cv2

    from caingan.media.video import VideoReader

    row = next(r for r in clip_rows if r["split"] == "test")
    with VideoReader(shared_data / row["path"]) as reader:
        real = [f for _, f in zip(range(2 * REAL), reader)]
    h, w = real[0].shape[:2]
    path = tmp_path_factory.mktemp("clips") / "with_blank.mp4"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
    assert out.isOpened()
    frames = real[:REAL] + [np.full((h, w, 3), 40, np.uint8)] * BLANK + real[REAL:]
    for f in frames:
        out.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out.release()
    return path


def _errors(rv) -> list[str]:
    return [rv.message()] if "c0392b" in rv.message_label.styleSheet() and rv.message() else []


@pytest.fixture
def live(qtbot, make_window, good_photo):
    """The editor with one photo and its reenactment window."""
    w = make_window()
    wait_model(qtbot, w)
    add_photo(qtbot, w, good_photo)
    w.reenact_action.trigger()                  # File ▸ Reenact from camera or video…
    rv = w.reenact_window
    assert rv is not None and rv.isVisible()
    shown, failed = [], []
    rv.frameShown.connect(shown.append)
    rv.worker.failed.connect(failed.append, Qt.ConnectionType.QueuedConnection)
    return w, rv, shown, failed


@pytest.mark.slow
def test_video_as_camera_drives_the_face_skips_faceless_frames_and_stops(
        qtbot, live, mixed_clip):
    w, rv, shown, failed = live
    rv.open_video(mixed_clip)            # plays at its own fps, looping, late frames dropped

    def good_frames():
        return [f for f in shown if f.result is not None and not f.result.skipped]

    def seen_blank_then_face_again():
        skipped = [i for i, f in enumerate(shown) if f.result is not None and f.result.skipped]
        return bool(skipped) and any(not f.result.skipped for f in shown[skipped[0]:]
                                     if f.result is not None)

    # a busy machine shows fewer frames of each loop of the clip: wait for five faces too
    qtbot.waitUntil(lambda: seen_blank_then_face_again() and len(good_frames()) >= 5,
                    timeout=60000)
    assert failed == [] and _errors(rv) == []
    s = w.image_size
    good = good_frames()
    assert good[-1].face.shape == (s, s, 3) and good[-1].landmarks.shape == (s, s, 3)
    assert rv.face_pane.image() is not None and rv.landmark_pane.image() is not None
    assert rv.frame_pane.image() is not None and rv.frame_pane.image().ndim == 3
    # The driver's motion moves the target: not every frame renders the same pose.
    assert len({f.result.target.tobytes() for f in good}) > 1

    # A faceless frame repeats the last good target and face; no model call, no error.
    i = next(i for i, f in enumerate(shown) if f.result is not None and f.result.skipped)
    before = [f for f in shown[:i] if f.result is not None and not f.result.skipped]
    blank = shown[i]
    assert blank.result.driver is None
    np.testing.assert_array_equal(blank.result.target, before[-1].result.target)
    np.testing.assert_array_equal(blank.face, before[-1].face)
    assert blank.skipped >= 1 and "no face" in rv.stats_label.text()

    assert re.fullmatch(r"\d+\.\d fps", rv.fps_label.text()), rv.fps_label.text()
    assert float(rv.fps_label.text().split()[0]) > 0
    assert not rv.start_button.isEnabled() and rv.stop_button.isEnabled()

    with qtbot.waitSignal(rv.sessionStopped, timeout=10000):
        rv.stop_button.click()
    assert rv.start_button.isEnabled() and not rv.stop_button.isEnabled()
    n = len(shown)
    qtbot.wait(400)
    assert len(shown) == n                 # nothing arrives after Stop
    assert failed == []


RENDER_DELAY_S = 0.1       # a busy machine: at most 10 faces a second from a 25 fps clip


def slow_loader(path, device):
    """The app's loader on a machine where every render takes RENDER_DELAY_S longer."""
    from app.preview_worker import default_loader

    reenactor = default_loader(path, device)
    generate = reenactor.generate

    def slow_generate(points):
        time.sleep(RENDER_DELAY_S)
        return generate(points)

    reenactor.generate = slow_generate
    return reenactor


@pytest.mark.slow
def test_set_neutral_and_record_every_rendered_frame_once_at_its_time(
        qtbot, live, mixed_clip, tmp_path, good_photo, tiny_weights, detector):
    """A recording holds each rendered face once, at the time of its driving frame: on a busy
    machine (10 renders a second from a 25 fps clip) it must not repeat stale faces to fill
    the clip's rate."""
    import av

    from app.reenact_view import ReenactWindow
    from caingan.media.images import load_image

    w, _, _, _ = live
    rv = ReenactWindow(tiny_weights, "cpu", sources=w.current_sources(), loader=slow_loader,
                       detector_factory=lambda: detector, camera_lister=lambda: [])
    qtbot.addWidget(rv)
    shown, failed = [], []
    rv.frameShown.connect(shown.append)
    rv.worker.failed.connect(failed.append, Qt.ConnectionType.QueuedConnection)
    try:
        assert rv.paste_box.isChecked()               # the face is pasted back into the photo
        rv.open_video(mixed_clip)
        qtbot.waitUntil(lambda: any(f.result is not None for f in shown), timeout=60000)
        first_neutral = next(f.result.neutral_frame for f in shown if f.result is not None)

        rv.neutral_button.click()
        qtbot.waitUntil(lambda: shown[-1].result is not None
                        and (shown[-1].result.neutral_frame or 0) > (first_neutral or 0),
                        timeout=30000)

        rec = tmp_path / "rec.mp4"
        rv.start_recording(rec)
        qtbot.waitUntil(lambda: rv.record_button.text() == "Stop recording", timeout=10000)
        n = len(shown)     # rendered faces (faceless frames are not recorded; the first few may
        #                    predate the recording, which starts between two frames)
        qtbot.waitUntil(lambda: sum(f.result is not None and not f.result.skipped
                                    for f in shown[n:]) >= 12, timeout=30000)
        assert not rec.exists()                # written under a temporary name until finished
        with qtbot.waitSignal(rv.recordingSaved, timeout=10000) as blocker:
            rv.stop_recording()
        path, frames = blocker.args
        assert Path(path) == rec and frames >= 8
        with av.open(str(rec)) as c:
            st = c.streams.video[0]
            decoded = [(float(f.pts * st.time_base), f.to_ndarray(format="rgb24").shape)
                       for f in c.decode(st)]
        times = np.array([t for t, _ in decoded])
        assert len(decoded) == frames                       # every rendered frame, once
        gaps = np.diff(times)
        period = 1 / 25.0                                   # the clip's frame time
        assert gaps.min() > period - 1e-3                   # no two copies of one frame
        assert np.allclose(gaps / period, np.round(gaps / period), atol=0.03)  # driving times
        # no more frames than renders: at most one per RENDER_DELAY_S
        assert frames <= times[-1] / RENDER_DELAY_S + 1
        h, w_ = load_image(good_photo).shape[:2]          # the whole photo, not the 128² face
        assert decoded[0][1] == (h + h % 2, w_ + w_ % 2, 3)
        # and what the window showed while recording was that pasted-back frame too
        last = next(f for f in reversed(shown) if f.result is not None)
        assert rv.face_pane.image().shape[:2] == last.result.pasted.shape[:2] == (h, w_)
        assert [p.name for p in tmp_path.iterdir()] == ["rec.mp4"]
        assert rv.record_button.text() == "Record…" and failed == []
        with qtbot.waitSignal(rv.sessionStopped, timeout=10000):
            rv.stop()
    finally:
        rv.shutdown()


def test_no_camera_is_a_message_not_a_crash(qtbot, tiny_weights, detector):
    from app.reenact_view import ReenactWindow

    rv = ReenactWindow(tiny_weights, "cpu", camera_lister=lambda: [],
                       detector_factory=lambda: detector)
    qtbot.addWidget(rv)
    rv.show()
    try:
        qtbot.waitUntil(lambda: rv.cameras is not None, timeout=10000)
        assert "No camera found" in rv.message()
        shown = [rv.message(), rv.status_label.text(), rv.input_box.currentText()]
        assert sum(t.count("No camera found") for t in shown) == 1, shown     # said once
        assert rv.input_box.currentData() is None
        assert rv.start() is False and "No input" in rv.message()
        assert rv.start_button.isEnabled() and not rv.worker.running
    finally:
        rv.shutdown()


def test_broken_video_and_missing_sources_are_shown_in_the_window(
        qtbot, tiny_weights, detector, tmp_path, good_photo):
    from app.detect_worker import LoadedSource
    from app.reenact_view import ReenactWindow
    from app.sources import Sources
    from caingan.face.crop import crop_face
    from caingan.face.landmark_edit import mean_face

    photo = np.full((200, 200, 3), 120, np.uint8)
    crop = crop_face(photo, mean_face(200), 64)
    sources = Sources.of([LoadedSource(1, "grey", None, photo, crop, None)])
    rv = ReenactWindow(tiny_weights, "cpu", camera_lister=lambda: [],
                       detector_factory=lambda: detector)
    qtbot.addWidget(rv)
    rv.show()
    try:
        broken = tmp_path / "broken.mp4"
        broken.write_bytes(b"not a video at all" * 50)
        rv.open_video(broken)
        assert "Add a source photo" in rv.message()        # refused before anything runs
        rv.set_sources(sources)
        with qtbot.waitSignal(rv.sessionStopped, timeout=20000):
            assert rv.start()
        assert "broken.mp4" in rv.message() and _errors(rv)
        assert rv.start_button.isEnabled() and not rv.worker.running
    finally:
        rv.shutdown()


def test_the_window_follows_the_editors_sources_and_target(qtbot, live, second_photo):
    w, rv, shown, failed = live
    (a,) = w.source_ids()
    assert rv.sources is not None and rv.sources.ids == (a,) and rv.sources.target is w.target
    b = add_photo(qtbot, w, second_photo)
    assert rv.sources.ids == (a, b) and rv.sources.target.job_id == a
    w.set_target(w.sources[b], ask=False)             # "Edit this face" on the second photo
    assert rv.sources.target.job_id == b
    np.testing.assert_array_equal(rv.sources.target_points, w.sources[b].crop.points)
    w.sources_panel.list.setCurrentRow(1)
    with qtbot.waitSignal(w.sourcesChanged, timeout=5000):
        w.sources_panel._move(-1)                     # ▲: the order the model sees
    assert rv.sources.ids == (b, a)
    w.remove_sources([a, b])
    assert rv.sources is None
