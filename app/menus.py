"""The editor's actions, menus and toolbar: everything the user can trigger, with its shortcut."""

from __future__ import annotations

from PySide6.QtCore import QSize
from PySide6.QtGui import QAction, QActionGroup, QKeySequence


def build_actions(win) -> None:
    """The editor's actions (with shortcuts and tips), its menus and its toolbar, as attributes
    of `win` (add_action, undo_action, …)."""
    us = win.doc.undo_stack
    win.undo_action = us.createUndoAction(win, "Undo")
    win.undo_action.setShortcut(QKeySequence("Ctrl+Z"))
    win.redo_action = us.createRedoAction(win, "Redo")
    win.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])

    def act(text, slot, shortcut=None, checkable=False, tip=None) -> QAction:
        a = QAction(text, win)
        if shortcut:
            a.setShortcut(QKeySequence(shortcut))
        a.setCheckable(checkable)
        if tip:
            a.setToolTip(tip)
            a.setStatusTip(tip)
        (a.toggled if checkable else a.triggered).connect(slot)
        win.addAction(a)
        return a

    win.add_action = act("Add photos…", win.add_photos_dialog, "Ctrl+O")
    win.paste_action = act("Paste image", win.paste_from_clipboard, "Ctrl+V")
    win.open_lm_action = act("Open landmarks…", win.open_landmarks_dialog, "Ctrl+Shift+O")
    win.save_lm_action = act("Save landmarks…", win.save_landmarks_dialog, "Ctrl+S")
    win.save_result_action = act("Save result…", win.save_result_dialog, "Ctrl+Shift+S")
    win.reenact_action = act("Reenact from camera or video…", win.open_reenact,
                              tip="Drive the face with a webcam or a video, live")
    win.export_action = act("Export frames…", win.open_export_dialog, "Ctrl+E",
                             tip="Render a driving video, landmark file or keyframes to files")
    win.quit_action = act("Quit", win.close, "Ctrl+Q")
    win.reset_action = act("Reset edits", win.doc.reset, "Ctrl+R",
                            tip="Back to the detected landmarks, sliders at 0")
    win.symmetrize_action = act("Symmetrize", win.symmetrize,
                                 tip="Make the face left/right symmetric (undoable)")
    win.point_mode = act("Point", lambda on: None, checkable=True,
                          tip="Drag moves one point")
    win.part_mode = act("Part", win._set_part_mode, checkable=True,
                         tip="Drag moves the whole part (eye, brow, nose, mouth, jaw)")
    group = QActionGroup(win)
    group.setExclusive(True)
    group.addAction(win.point_mode)
    group.addAction(win.part_mode)
    win.point_mode.setChecked(True)
    win.symmetric_action = act("Symmetric", lambda on: None, checkable=True,
                                tip="Mirror every drag left↔right about the face's axis")
    win.messages_action = act("Messages…", win.show_messages)
    for a in (win.undo_action, win.redo_action):
        win.addAction(a)

    m = win.menuBar().addMenu("&File")
    for a in (win.add_action, win.paste_action, None, win.open_lm_action,
              win.save_lm_action, win.save_result_action, None, win.reenact_action,
              win.export_action, None, win.quit_action):
        m.addSeparator() if a is None else m.addAction(a)
    m = win.menuBar().addMenu("&Edit")
    for a in (win.undo_action, win.redo_action, None, win.reset_action,
              win.symmetrize_action, None, win.point_mode, win.part_mode,
              win.symmetric_action):
        m.addSeparator() if a is None else m.addAction(a)
    pp = win.personalize_panel
    m = win.menuBar().addMenu("&Model")
    for a in (pp.personalize_action, pp.personalized_action, None, pp.manage_action):
        m.addSeparator() if a is None else m.addAction(a)
    m = win.menuBar().addMenu("&View")
    m.addAction(win.messages_action)

    tb = win.addToolBar("Edit")
    tb.setObjectName("editToolbar")
    tb.setMovable(False)
    tb.setIconSize(QSize(16, 16))
    for a in (win.add_action, None, win.point_mode, win.part_mode, win.symmetric_action,
              None, win.undo_action, win.redo_action, win.reset_action,
              win.symmetrize_action, None, win.save_result_action):
        tb.addSeparator() if a is None else tb.addAction(a)
