"""The edit being made: base landmarks + slider values, with undo/redo.

What is shown and rendered is ``apply_sliders(base, params)`` (see caingan.face.landmark_edit): drags
edit the base, sliders stay absolute on top of it. Every user action is one undo step: a whole
drag, a whole slider press-to-release, consecutive keyboard steps on one slider, a reset.

Slider values are kept finite and inside ``SLIDER_RANGES``, so the sliders can always show exactly
what the document holds: `set_params` ignores a NaN/infinite value (and re-announces the current
params so a view that showed it snaps back) and clamps an out-of-range one.

The document is a QObject with an undo stack but no widgets: it works without a QApplication.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from dataclasses import replace as dc_replace

import numpy as np
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from caingan.face import landmark_edit as le


@dataclass(frozen=True)
class EditState:
    base: np.ndarray            # (68, 2) float32, never mutated in place
    params: le.EditParams

    @staticmethod
    def of(base: np.ndarray, params: le.EditParams | None = None) -> "EditState":
        b = np.array(base, dtype=np.float32, copy=True)
        b.setflags(write=False)
        return EditState(b, params or le.EditParams())

    def same_as(self, other: "EditState") -> bool:
        return self.params == other.params and np.array_equal(self.base, other.base, equal_nan=True)


def finite_params(params: le.EditParams) -> bool:
    return all(math.isfinite(getattr(params, f.name)) for f in fields(params))


def clamp_params(params: le.EditParams) -> le.EditParams:
    """Each value inside its slider range (values must be finite)."""
    return dc_replace(params, **{name: min(max(getattr(params, name), lo), hi)
                                 for name, (lo, hi) in le.SLIDER_RANGES.items()})


def _checked(params: le.EditParams | None) -> le.EditParams | None:
    if params is not None and not finite_params(params):
        raise ValueError(f"slider values must be finite, got {params}")
    return None if params is None else clamp_params(params)


class _SetState(QUndoCommand):
    def __init__(self, doc: "EditDocument", before: EditState, after: EditState, text: str,
                 merge_id: int = -1):
        super().__init__(text)
        self.doc, self.before, self.after, self._id = doc, before, after, merge_id

    def redo(self) -> None:
        self.doc._set_state(self.after)

    def undo(self) -> None:
        self.doc._set_state(self.before)

    def id(self) -> int:
        return self._id

    def mergeWith(self, other: QUndoCommand) -> bool:  # noqa: N802
        if other.id() != self._id or self._id < 0:
            return False
        self.after = other.after
        return True


class EditDocument(QObject):
    changed = Signal()          # shown points changed (every drag step, slider step, undo…)
    paramsReplaced = Signal()   # params changed by something other than the sliders themselves

    SLIDER_MERGE_BASE = 1000

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.undo_stack = QUndoStack(self)
        self.original: EditState | None = None
        self._saved: EditState | None = None      # the state last saved (or started from)
        self._state: EditState | None = None
        self._shown: np.ndarray | None = None
        self._drag: tuple | None = None          # (start state, indices, grabbed, symmetric)
        self._slider_start: EditState | None = None

    # -- queries
    @property
    def state(self) -> EditState | None:
        return self._state

    @property
    def active(self) -> bool:
        return self._state is not None

    def shown_points(self) -> np.ndarray | None:
        """The landmarks after sliders: what the view draws and the model renders."""
        if self._state is None:
            return None
        if self._shown is None:
            self._shown = le.apply_sliders(self._state.base, self._state.params)
        return self._shown

    def is_dirty(self) -> bool:
        """The edits differ from what was last saved (or from the start): compared by state, so
        edits that were undone or moved back by hand (Reset sliders) leave nothing unsaved."""
        return (self._state is not None and self._saved is not None
                and not self._state.same_as(self._saved))

    # -- whole-document changes
    def start(self, points: np.ndarray, params: le.EditParams | None = None) -> None:
        """A new target face: its landmarks become the base and the reset point; history clears."""
        self.original = EditState.of(points)
        self.undo_stack.clear()
        self._drag = self._slider_start = None
        self._state = None
        self._set_state(EditState.of(points, _checked(params)))
        self._saved = self._state
        self.undo_stack.setClean()

    def clear(self) -> None:
        self.original = self._state = self._shown = self._saved = None
        self.undo_stack.clear()
        self.changed.emit()
        self.paramsReplaced.emit()

    def replace(self, state: EditState, text: str) -> None:
        """One undoable step to an arbitrary state (reset, symmetrize, opened file…)."""
        if self._state is None:
            return
        state = EditState.of(state.base, _checked(state.params))
        if state.same_as(self._state):
            return
        self.undo_stack.push(_SetState(self, self._state, state, text))

    def reset(self) -> None:
        if self.original is not None:
            self.replace(EditState.of(self.original.base), "Reset")

    def mark_saved(self) -> None:
        self._saved = self._state
        self.undo_stack.setClean()

    # -- drags (one undo step from press to release)
    def begin_drag(self, grabbed: int, part: bool, symmetric: bool) -> None:
        if self._state is None:
            return
        indices = le.DRAG_GROUPS[le.group_of(grabbed)] if part else np.array([grabbed])
        self._drag = (self._state, indices, grabbed, symmetric)

    def drag_to(self, x: float, y: float) -> None:
        if self._drag is None:
            return
        start, indices, grabbed, symmetric = self._drag
        try:
            base = le.drag_base(start.base, start.params, indices, grabbed, (x, y), symmetric)
        except ValueError:   # no eyes to define the face frame: plain move, no symmetry
            base = le.move_points(start.base, indices, np.array([x, y]) - start.base[grabbed])
        self._set_state(EditState.of(base, start.params))

    def end_drag(self) -> None:
        if self._drag is None:
            return
        start, indices = self._drag[0], self._drag[1]
        self._drag = None
        if not self._state.same_as(start):
            what = "Move part" if len(indices) > 1 else "Move point"
            self.undo_stack.push(_SetState(self, start, self._state, what))

    def cancel_drag(self) -> None:
        if self._drag is not None:
            start = self._drag[0]
            self._drag = None
            self._set_state(start)

    @property
    def dragging(self) -> bool:
        return self._drag is not None

    # -- sliders
    def begin_slider(self) -> None:
        self._slider_start = self._state

    def set_params(self, params: le.EditParams, merge_key: int | None = None) -> None:
        """Slider moved. Inside begin/end_slider it only previews; outside it is one step
        (consecutive keyboard steps on the same slider merge into one). A non-finite value is
        ignored (paramsReplaced re-announces the current params); out-of-range ones are clamped."""
        if self._state is None:
            return
        if not finite_params(params):
            self.paramsReplaced.emit()
            return
        params = clamp_params(params)
        if params == self._state.params:
            return
        new = EditState.of(self._state.base, params)
        if self._slider_start is not None:
            self._set_state(new)
            return
        merge = -1 if merge_key is None else self.SLIDER_MERGE_BASE + merge_key
        self.undo_stack.push(_SetState(self, self._state, new, "Slider", merge))

    def end_slider(self) -> None:
        start, self._slider_start = self._slider_start, None
        if start is not None and self._state is not None and not self._state.same_as(start):
            self.undo_stack.push(_SetState(self, start, self._state, "Slider"))

    # -- internal
    def _set_state(self, state: EditState) -> None:
        params_changed = self._state is None or state.params != self._state.params
        self._state = state
        self._shown = None
        self.changed.emit()
        if params_changed and self._slider_start is None:
            self.paramsReplaced.emit()
