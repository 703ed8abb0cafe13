"""What a first-time user sees: the window opens with the bundled weights and the sample face."""

from __future__ import annotations

from .conftest import wait_model, wait_quiet


def test_opens_with_bundled_weights_and_sample_face(qtbot, detector):
    from app.main_window import MainWindow
    from caingan.assets import DEFAULT_WEIGHTS

    assert DEFAULT_WEIGHTS.is_file(), f"the bundled weights {DEFAULT_WEIGHTS} are missing"
    w = MainWindow(device="cpu", detector_factory=lambda: detector, confirm_discard=False)
    qtbot.addWidget(w)
    w.show()
    try:
        wait_model(qtbot, w, timeout=60000)
        qtbot.waitUntil(lambda: len(w.sources) == 1, timeout=60000)
        wait_quiet(qtbot, w, timeout=60000)
        src = next(iter(w.sources.values()))
        assert "astronaut" in src.label
        assert w.target is src
        assert w.last_result.image.shape == (256, 256, 3)  # the default model renders 256²
        assert w.last_result.image.std() > 10          # a picture, not a flat fill
        assert "CPU" in w.device_label.text()
        assert not [m.text for m in w.notifier.history if m.level == "error"]
    finally:
        w.shutdown()
