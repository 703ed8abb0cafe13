"""Expression and head-pose sliders: absolute values applied on top of the dragged base."""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QLabel, QPushButton, QSlider, QWidget

from caingan.face.landmark_edit import SLIDER_RANGES, EditParams

LABELS = {
    "mouth_open": "Mouth open",
    "smile": "Smile",
    "brows": "Eyebrows raise",
    "eyes_close": "Eyes close",
    "yaw": "Head yaw",
    "pitch": "Head pitch",
    "roll": "Head roll",
}
STEPS = 100   # slider ticks on each side of zero


class SlidersPanel(QWidget):
    """Emits the full EditParams on every change, plus press/release so a drag is one undo step."""

    paramsChanged = Signal(object, object)   # (EditParams, slider index for keyboard merging)
    interactionStarted = Signal()
    interactionFinished = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.sliders: dict[str, QSlider] = {}
        self._values: dict[str, QLabel] = {}
        self._syncing = False
        grid = QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        grid.setVerticalSpacing(2)
        pose = ("yaw", "pitch", "roll")
        for index, name in enumerate(SLIDER_RANGES):
            # expressions on the left, head pose on the right
            col = 3 if name in pose else 0
            row = pose.index(name) if name in pose else index
            label = QLabel(LABELS[name])
            label.setFixedWidth(110)
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setObjectName(f"slider_{name}")
            slider.setRange(-STEPS, STEPS)
            slider.setPageStep(10)
            slider.setTickPosition(QSlider.TickPosition.TicksBelow)
            slider.setTickInterval(STEPS)
            value = QLabel()
            value.setFixedWidth(52)   # fixed: a changing width would re-flow the layout mid-drag
            value.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            slider.valueChanged.connect(lambda _v, n=name, i=index: self._changed(n, i))
            slider.sliderPressed.connect(self.interactionStarted)
            slider.sliderReleased.connect(self.interactionFinished)
            grid.addWidget(label, row, col)
            grid.addWidget(slider, row, col + 1)
            grid.addWidget(value, row, col + 2)
            self.sliders[name] = slider
            self._values[name] = value
            self._show_value(name)
        self.reset_button = QPushButton("Reset sliders")
        self.reset_button.clicked.connect(self._reset_clicked)
        grid.setColumnMinimumWidth(2, 60)   # a gap between the two groups
        grid.addWidget(self.reset_button, 3, 3, 1, 3)

    # -- value mapping: ticks ↔ range, 0 ↔ 0 even for asymmetric ranges
    @staticmethod
    def to_value(name: str, tick: int) -> float:
        lo, hi = SLIDER_RANGES[name]
        return tick / STEPS * (hi if tick >= 0 else -lo)

    @staticmethod
    def to_tick(name: str, value: float) -> int:
        """The nearest tick, clamped to the slider; ValueError for NaN/infinity."""
        if not math.isfinite(value):
            raise ValueError(f"slider {name!r}: value must be finite, got {value}")
        lo, hi = SLIDER_RANGES[name]
        tick = int(round(value / (hi if value >= 0 else -lo) * STEPS)) if value else 0
        return min(max(tick, -STEPS), STEPS)

    def params(self) -> EditParams:
        return EditParams(**{n: self.to_value(n, s.value()) for n, s in self.sliders.items()})

    def set_params(self, params: EditParams) -> None:
        """Show params (undo, reset, file) without emitting paramsChanged."""
        self._syncing = True
        try:
            for name, slider in self.sliders.items():
                slider.setValue(self.to_tick(name, getattr(params, name)))
                self._show_value(name)
        finally:
            self._syncing = False

    def set_value(self, name: str, value: float) -> None:
        """Programmatic move, as if the user had used the keyboard (tests, benchmarks); a NaN or
        infinite value is ignored, as a key press could not produce it."""
        if math.isfinite(value):
            self.sliders[name].setValue(self.to_tick(name, value))

    def _show_value(self, name: str) -> None:
        v = self.to_value(name, self.sliders[name].value())
        unit = "°" if name in ("yaw", "pitch", "roll") else ""
        self._values[name].setText(f"{v:+.0f}{unit}" if unit else f"{v:+.2f}")

    def _changed(self, name: str, index: int) -> None:
        self._show_value(name)
        if not self._syncing:
            self.paramsChanged.emit(self.params(), index)

    def _reset_clicked(self) -> None:
        if self.params().is_neutral():
            return
        self.interactionStarted.emit()
        for slider in self.sliders.values():
            slider.setValue(0)
        self.interactionFinished.emit()
