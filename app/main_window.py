"""The editor window: wires the sources, the landmark editor, the sliders and the preview worker.

Data flow: photos → DetectWorker (load, detect, crop) → sources panel + PreviewWorker.set_sources.
The first source (or the one the user picks) becomes the target: its crop is the editor's
background and its landmarks the document's base. Every change of the shown landmarks goes to
the PreviewWorker as the newest request; its results come back as signals and are drawn.
Nothing here runs the model or the detector on the GUI thread.

The reenactment window and the export dialog see the sources only as an app.sources.Sources
snapshot: `current_sources()`, and `sourcesChanged` whenever the photos, their order, the
target or which photos are used change. Adding, removing and choosing the photos is
app.editor_sources' part of the window; saving and opening files (and asking before unsaved
edits are dropped) app.editor_files'; the actions and menus app.menus'.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QLabel, QMainWindow, QSplitter,
                               QVBoxLayout, QWidget)

from caingan.assets import DEFAULT_WEIGHTS
from caingan.face import landmark_edit as le

from .detect_worker import DetectWorker, LoadedSource, SourceJob, default_detector_factory
from .document import EditDocument, EditState
from .editor_files import EditorFiles
from .editor_sources import EditorSources
from .image_pane import ImagePane, show_crop, titled
from .landmark_view import LandmarkView
from .menus import build_actions
from .notifications import Banner, MessagesDialog, Notifier, name_files
from .people import People
from .personalize_panel import PersonalizePanel
from .preview_worker import PreviewResult, PreviewWorker, default_loader, sources_overlay
from .sliders import SlidersPanel
from .sources_panel import SourcesPanel, choose_face
from .workers import WorkerThread

REPO = Path(__file__).resolve().parents[1]


def _fixed_label(text: str, width: int, tip: str) -> QLabel:
    """Status widgets keep one size whatever they say (a re-flow would move the views)."""
    label = QLabel(text)
    label.setFixedWidth(width)
    label.setToolTip(tip)
    label.setFrameShape(QLabel.Shape.StyledPanel)
    return label


class MainWindow(EditorSources, EditorFiles, QMainWindow):
    previewShown = Signal(object)     # PreviewResult, after the preview pane shows it
    sourceAdded = Signal(int)         # id, after a photo is detected and shown
    sourceFailed = Signal(int, str)   # id, message
    sourcesChanged = Signal(object)   # app.sources.Sources, or None when there is no photo

    def __init__(self, weights: str | Path | None = None, device: str = "auto", *,
                 sample: bool = True, loader=None, detector_factory=None,
                 confirm_discard: bool = True):
        super().__init__()
        self.setWindowTitle("CainGAN Pose Editor")
        self.resize(1280, 780)
        self.setAcceptDrops(True)
        self.confirm_discard = confirm_discard
        self.weights = Path(weights) if weights else DEFAULT_WEIGHTS
        self.device = device
        self.image_size: int | None = None       # the model's crop size, known once it loads
        self.sources: dict[int, LoadedSource] = {}
        self.target: LoadedSource | None = None
        self.people = People()                   # which photos show the edited person
        self._job_paths: dict[int, str | None] = {}    # photos being detected: their files
        self._sample_job: int | None = None
        self.last_result: PreviewResult | None = None
        self.model_info = None
        self._waiting: list[SourceJob] = []      # jobs held until image_size is known
        self._next_id = 1
        self._paste_count = 0
        self._request_id = 0
        self.last_folder: str | None = None     # where the last file dialog ended
        self.loader = loader or default_loader  # (weights, device) → a ReenactorProtocol
        self.detector_factory = detector_factory or default_detector_factory
        self.reenact_window = None               # opened from File ▸ Reenact… (app/reenact_view)
        self.export_dialog = None                # opened from File ▸ Export frames… (app/export_dialog)

        self.notifier = Notifier(self)
        self.doc = EditDocument(self)
        self._build_ui()
        build_actions(self)

        self.preview = PreviewWorker(self.loader)
        self.detect = DetectWorker(self.detector_factory)
        self._threads = [WorkerThread(self.preview, "preview"), WorkerThread(self.detect, "detect")]
        self._connect()

        self._start_model()
        if sample:
            self.add_sample()

    # ------------------------------------------------------------------ construction
    def _build_ui(self) -> None:
        # Minimum widths add up to < 1024 px (with the splitter handles and margins), so every
        # title and button stays whole on a 1024×640 screen.
        self.sources_panel = SourcesPanel()
        self.sources_panel.setMinimumWidth(220)

        self.editor = LandmarkView()
        self.editor.setMinimumSize(260, 260)
        self.editor.setToolTip("Drag a point to move it; Shift+drag moves its whole part "
                               "(eye, brow, nose, mouth, jaw)")
        editor_box = titled("<b>Target</b> — drag points", self.editor)
        self.editor_title = editor_box.findChild(QLabel)

        self.landmark_pane = ImagePane("Landmark image", min_side=150)
        lm_box = titled("<b>Landmarks</b> (model input)", self.landmark_pane)

        self.preview_pane = ImagePane("Starting…", min_side=220)
        self.paste_back_box = QCheckBox("Paste back into the photo")
        self.paste_back_box.setToolTip("Show (and save) the whole original photo with the new "
                                       "face pasted in")
        self.sources_used_box = QCheckBox("Show which source")
        self.sources_used_box.setToolTip(
            "Colour the preview by the source photo each region was taken from (the model's "
            "responsibilities r_i), with those photos as a legend below it")
        options = QWidget()
        row = QHBoxLayout(options)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.paste_back_box)
        row.addWidget(self.sources_used_box)
        row.addStretch(1)
        self.personalize_panel = PersonalizePanel(self)        # Personalize, its progress, toggle
        pv_box = titled("<b>Preview</b>", self.preview_pane, options, self.personalize_panel)

        split = QSplitter(Qt.Orientation.Horizontal)
        for w, stretch in ((self.sources_panel, 0), (editor_box, 3), (lm_box, 2), (pv_box, 3)):
            split.addWidget(w)
            split.setStretchFactor(split.count() - 1, stretch)
        split.setChildrenCollapsible(False)
        split.setSizes([240, 380, 240, 390])

        self.sliders = SlidersPanel()
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(split, 1)
        lay.addWidget(self.sliders)
        self.setCentralWidget(central)
        self.banner = Banner(central)

        sb = self.statusBar()
        self.detector_label = _fixed_label("Detector: –", 190, "Face landmark detector backend")
        self.device_label = _fixed_label("Device: –", 150, "Where the model runs")
        self.latency_label = _fixed_label("Preview: – ms", 150,
                                          "Time from the last landmark change to its preview")
        for w in (self.detector_label, self.device_label, self.latency_label):
            sb.addPermanentWidget(w)

    def _connect(self) -> None:
        self.notifier.posted.connect(self._show_message)
        sp = self.sources_panel
        sp.addRequested.connect(self.add_photos_dialog)
        sp.pasteRequested.connect(self.paste_from_clipboard)
        sp.filesDropped.connect(self.add_files)
        sp.removeRequested.connect(self.remove_sources)
        sp.orderChanged.connect(lambda _ids: self._sources_changed())
        sp.targetRequested.connect(lambda i: self.set_target(self.sources[i]))
        sp.faceRequested.connect(lambda i: choose_face(self, i))
        sp.useAnywayRequested.connect(self.use_anyway)

        self.editor.dragStarted.connect(
            lambda i, part: self.doc.begin_drag(i, part, self.symmetric_action.isChecked()))
        self.editor.dragMoved.connect(lambda _i, x, y: self.doc.drag_to(x, y))
        self.editor.dragFinished.connect(lambda _i: self.doc.end_drag())

        self.sliders.paramsChanged.connect(self.doc.set_params)
        self.sliders.interactionStarted.connect(self.doc.begin_slider)
        self.sliders.interactionFinished.connect(self.doc.end_slider)
        self.doc.paramsReplaced.connect(self._sync_sliders)
        self.doc.changed.connect(self._points_changed)
        self.doc.undo_stack.cleanChanged.connect(self._update_title)

        self.paste_back_box.toggled.connect(self._paste_back_toggled)
        self.sources_used_box.toggled.connect(lambda _on: self._show_preview())

        self.personalize_panel.connect_preview(self.preview)
        self.preview.modelReady.connect(self._model_ready)
        self.preview.modelFailed.connect(self._model_failed)
        self.preview.rendered.connect(self._rendered)
        self.preview.failed.connect(lambda msg: self.notifier.error(f"Preview failed: {msg}"))
        self.detect.detected.connect(self._detected)
        self.detect.failed.connect(self._detect_failed)
        self.detect.detectorReady.connect(self._detector_ready)
        self.detect.identified.connect(self._identified)

    def _detector_ready(self, text: str) -> None:
        """The backend's name in the status bar; why it fell back (long) in the tooltip."""
        backend, _, why = text.partition(" (")
        self.detector_label.setText(f"Detector: {backend}")
        self.detector_label.setToolTip("Face landmark detector: " + text if why else
                                       f"Face landmark detector: {backend}")
        if why:
            self.statusBar().showMessage(f"Landmarks by {backend}: {why.rstrip(')')}", 8000)

    # ------------------------------------------------------------------ model
    def _start_model(self) -> None:
        if not self.weights.is_file():
            self.preview_pane.set_message(
                f"No model weights found at {self.weights.name}; run training or pass "
                "--weights PATH.")
            self.preview_pane.setToolTip(str(self.weights.absolute()))
            self.notifier.warning(f"No model weights at {self.weights}: the editor works, "
                                  "the preview stays empty.", files=[self.weights])
            self._set_image_size(_fallback_image_size())
            return
        self.preview_pane.set_message("Loading model…")
        self.preview.load_model(str(self.weights), self.device)

    def _model_ready(self, info) -> None:
        self.model_info = info
        self.device_label.setText(f"Device: {info.device_name}")
        self.preview_pane.set_message("")
        self._set_image_size(info.image_size)
        self._sources_changed()

    def _model_failed(self, msg: str) -> None:
        text, _ = name_files(f"Could not load the model from {self.weights}:\n{msg}",
                             [self.weights])
        self.preview_pane.set_message(text)
        self.preview_pane.setToolTip(str(self.weights.absolute()))
        self.notifier.error(f"Model not loaded: {msg}", files=[self.weights])
        self._set_image_size(_fallback_image_size())

    def _set_image_size(self, size: int) -> None:
        if self.image_size is None:
            self.image_size = size
            waiting, self._waiting = self._waiting, []
            for job in waiting:
                job.image_size = size
                self.detect.submit(job)

    # ------------------------------------------------------------------ target and edits
    def set_target(self, src: LoadedSource, ask: bool = True) -> None:
        """Edit this source's face: its crop is the background, its landmarks the new base."""
        if ask and not self._may_discard("Editing another face discards the current edits."):
            return
        self.target = src
        if src.path:
            self.last_folder = str(Path(src.path).parent)
        show_crop(self.editor, src.crop.image if src.view is None else src.view, src.crop.size)
        self.doc.start(src.crop.points)
        self._paste_back_toggled(self.paste_back_box.isChecked())
        self.statusBar().showMessage(f"Editing the face from {src.label}", 4000)
        self._sources_changed()           # the edited person decides which photos are used

    def _set_part_mode(self, on: bool) -> None:
        self.editor.part_mode = on

    def symmetrize(self) -> None:
        st = self.doc.state
        if st is not None:
            try:
                self.doc.replace(EditState.of(le.symmetrize(st.base), st.params), "Symmetrize")
            except ValueError as e:
                self.notifier.warning(f"Cannot symmetrize: {e}")

    def _sync_sliders(self) -> None:
        st = self.doc.state
        self.sliders.set_params(st.params if st else le.EditParams())

    def _points_changed(self) -> None:
        pts = self.doc.shown_points()
        self.editor.set_points(pts)
        if pts is not None and self.image_size:
            from caingan.face.landmark_image import draw_landmarks
            self.landmark_pane.set_image(draw_landmarks(pts, self.image_size))
        self._update_title()
        self.request_preview()

    def request_preview(self, points: np.ndarray | None = None) -> None:
        """Ask the worker for a render of the shown landmarks (or of `points`); never waits."""
        pts = self.doc.shown_points() if points is None else points
        if pts is None or self.model_info is None or not self.source_ids():
            return
        self._request_id += 1
        self.preview.request(self._request_id, pts)

    def _paste_back_toggled(self, on: bool) -> None:
        if on and self.target is not None:
            self.preview.set_paste_back(self.target.original, self.target.crop)
        else:
            self.preview.set_paste_back(None)
        self.request_preview()

    def _rendered(self, result: PreviewResult) -> None:
        if self.last_result is not None and result.request_id < self.last_result.request_id:
            return
        self.last_result = result
        current = self.current_sources()
        if current is not None and set(result.source_ids) == set(current.ids):
            self.preview_pane.set_message("")
        self._show_preview()
        ms = (time.perf_counter() - result.t_request) * 1000
        self.latency_label.setText(f"Preview: {ms:.0f} ms")
        self.latency_label.setToolTip(f"From the landmark change: {ms:.1f} ms; "
                                      f"model and paste-back: {result.render_ms:.1f} ms")
        self.previewShown.emit(result)

    def _show_preview(self) -> None:
        """The last render as the user asked for it: the face (or the pasted-back photo), or
        the face coloured by source with the source photos as its legend."""
        r = self.last_result
        if r is None:
            return
        if self.sources_used_box.isChecked():
            crops = [self.sources[i].crop.image for i in r.source_ids if i in self.sources]
            if len(crops) == len(r.source_ids):
                self.preview_pane.set_image(sources_overlay(r.image, r.weights, crops))
                return
        self.preview_pane.set_image(r.display)

    # ------------------------------------------------------------------ reenactment and export
    def open_reenact(self):
        """The live reenactment window (one per editor), driven by a camera or a video file."""
        from .reenact_view import ReenactWindow
        if self.reenact_window is None:
            win = ReenactWindow(self.weights, self.device, parent=self, loader=self.loader,
                                detector_factory=self.detector_factory,
                                sources=self.current_sources(), folder=self.dialog_folder)
            self.sourcesChanged.connect(win.set_sources)
            self.reenact_window = win
        self.reenact_window.show()
        self.reenact_window.raise_()
        return self.reenact_window

    def open_export_dialog(self):
        """The batch export dialog (kept, with its keyframes, for the editor's lifetime)."""
        from .export_dialog import ExportDialog
        if self.export_dialog is None:
            self.export_dialog = ExportDialog(self)
        self.export_dialog.show()
        self.export_dialog.raise_()
        return self.export_dialog

    # ------------------------------------------------------------------ messages, drops, quit
    def _show_message(self, msg) -> None:
        self.banner.show_message(msg)
        self.statusBar().showMessage(msg.text, 10000)

    def show_messages(self) -> None:
        MessagesDialog(self.notifier, self).exec()

    def _update_title(self, *_):
        self.setWindowTitle("CainGAN Pose Editor" + (" *" if self.doc.is_dirty() else ""))

    def dragEnterEvent(self, e) -> None:  # noqa: N802
        if e.mimeData().hasUrls():
            e.acceptProposedAction()

    def dropEvent(self, e) -> None:  # noqa: N802
        paths = [u.toLocalFile() for u in e.mimeData().urls() if u.isLocalFile()]
        if paths:
            e.acceptProposedAction()
            self.add_files(paths)

    def closeEvent(self, e) -> None:  # noqa: N802
        if not self._may_discard("The landmark edits are not saved."):
            e.ignore()
            return
        self.shutdown()
        super().closeEvent(e)

    def shutdown(self) -> None:
        """Stop the worker threads (waits for a render in progress)."""
        for extra in (self.reenact_window, self.export_dialog, self.personalize_panel):
            if extra is not None:
                extra.shutdown()
        for t in self._threads:
            t.stop()


def _fallback_image_size() -> int:
    from caingan.config import ModelConfig
    return ModelConfig.small().image_size
