"""Personalize in the editor on a tiny random warp-guided model: progress, cancel, the toggle,
reuse of stored personalizations, the Personalizations dialog, and what goes wrong.

Every test keeps its personalizations in its own tmp folder ($CAINGAN_PERSONAL_DIR) and runs
only a few fine-tuning steps ($CAINGAN_PERSONALIZE_STEPS)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect, Qt

from testdata import still

from .conftest import wait_model, wait_quiet

LONG_RUN = "5000"       # steps for runs that are cancelled or closed mid-way


@pytest.fixture(scope="session")
def warp_weights(tmp_path_factory) -> Path:
    """A tiny warp-guided model (the one kind that can be personalized), its generator free to
    paint anywhere (so fine-tuning it shows in the render)."""
    import torch

    from caingan.config import ModelConfig, RenderSettings
    from caingan.nn.checkpoint import save_model
    from caingan.nn.model import build_network

    torch.manual_seed(0)
    cfg = replace(ModelConfig.tiny(64), warp=True, output_size=128)
    settings = RenderSettings.for_model(cfg).replace(gen_region="free")
    return save_model(tmp_path_factory.mktemp("warp-model") / "tiny-warp", build_network(cfg), cfg,
                      settings=settings)


@pytest.fixture(autouse=True)
def store_dir(tmp_path, monkeypatch) -> Path:
    """Never the user's folder; few steps."""
    folder = tmp_path / "personal"
    monkeypatch.setenv("CAINGAN_PERSONAL_DIR", str(folder))
    monkeypatch.setenv("CAINGAN_PERSONALIZE_STEPS", "3")
    return folder


def load(qtbot, w, paths, timeout=40000) -> None:
    """Add photos, wait until all are detected and the preview shows all of them."""
    w.add_files([str(p) for p in paths])
    qtbot.waitUntil(lambda: len(w.source_ids()) == len(paths), timeout=timeout)
    qtbot.waitUntil(lambda: w.last_result is not None
                    and len(w.last_result.source_ids) == len(paths), timeout=timeout)
    wait_quiet(qtbot, w)


def wait_render(qtbot, w, personal: str, timeout=20000):
    """Wait until the newest preview is rendered with this personalization ("" = general)."""
    qtbot.waitUntil(lambda: w.last_result is not None and w.last_result.request_id == w._request_id
                    and w.last_result.personal == personal, timeout=timeout)
    return w.last_result.image.copy()


def personalize(qtbot, w, timeout=60000):
    """Click Personalize and wait until the run ends; the run's Progress reports."""
    panel = w.personalize_panel
    seen = []
    panel.worker.progress.connect(seen.append)
    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.running, timeout=timeout)
    return seen


def stored(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def texts(w, level=None) -> list[str]:
    return [m.text for m in w.notifier.history if level is None or m.level == level]


def fully_visible(widget, window) -> bool:
    if not widget.isVisible() or widget.visibleRegion().isEmpty():
        return False
    inside = QRect(QPoint(0, 0), window.size()).contains(
        QRect(widget.mapTo(window, QPoint(0, 0)), widget.size()))
    return inside and widget.width() >= widget.sizeHint().width()


# ----------------------------------------------------------------------------- a run

@pytest.mark.slow
def test_personalize_shows_progress_then_previews_personalized_and_toggle_compares(
        qtbot, make_window, warp_weights, store_dir):
    w = make_window(warp_weights)
    wait_model(qtbot, w)
    load(qtbot, w, [still(0, 1), still(0, 2)])
    panel = w.personalize_panel
    general = wait_render(qtbot, w, "")
    assert not panel.toggle.isEnabled() and not panel.toggle.isChecked()
    assert "General model" in panel.status.text()

    shown = []          # what the progress row says at each step (read after the panel updates)
    panel.worker.progress.connect(
        lambda p: shown.append((p.step, panel.bar.value(), panel.bar.maximum(), panel.eta.text(),
                                panel.bar.isVisible(), panel.cancel_button.isVisible())))
    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    assert panel.running and not panel.button.isEnabled()
    assert panel.bar.isVisible() and panel.cancel_button.isVisible()
    qtbot.waitUntil(lambda: not panel.running, timeout=60000)

    assert [s[:3] for s in shown] == [(1, 1, 3), (2, 2, 3), (3, 3, 3)]
    assert all(s[3].endswith(" s left") and s[4] and s[5] for s in shown), shown
    assert not panel.bar.isVisible() and panel.button.isEnabled()
    assert not texts(w, "error") and not texts(w, "warning")
    assert any("Personalized in" in t and "fine-tuned on your photos (3 steps)" in t
               for t in texts(w, "info"))

    # The preview switches to the personalized weights and re-renders.
    assert panel.toggle.isEnabled() and panel.toggle.isChecked()
    assert panel.personalized_action.isChecked()
    key = panel.in_use
    assert key and "Personalized on 2 photos." in panel.status.text()
    personal = wait_render(qtbot, w, key)
    assert not np.array_equal(personal, general)
    assert stored(store_dir) == [f"{key}.json", f"{key}.safetensors"]   # nothing half-written

    # Off: exactly the general model again; on: the personalized render again.
    panel.toggle.click()
    assert not panel.personalized_action.isChecked() and panel.in_use == ""
    np.testing.assert_array_equal(wait_render(qtbot, w, ""), general)
    panel.personalized_action.trigger()                       # the Model menu's toggle
    assert panel.toggle.isChecked()
    np.testing.assert_array_equal(wait_render(qtbot, w, key), personal)


@pytest.mark.slow
def test_personalize_cancel_mid_way_keeps_the_earlier_personalization(
        qtbot, make_window, warp_weights, store_dir, monkeypatch):
    w = make_window(warp_weights)
    wait_model(qtbot, w)
    load(qtbot, w, [still(2, 1), still(2, 2)])
    panel = w.personalize_panel
    personalize(qtbot, w)
    first = panel.in_use
    personal = wait_render(qtbot, w, first)
    files = stored(store_dir)

    # A longer run (more steps than the stored one: it is not reused) … cancelled mid-way.
    monkeypatch.setenv("CAINGAN_PERSONALIZE_STEPS", LONG_RUN)
    steps = []
    panel.worker.progress.connect(lambda p: steps.append(p.step))
    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(steps) >= 1, timeout=30000)
    assert panel.bar.maximum() == int(LONG_RUN)
    # Editing and previews go on meanwhile, with the earlier personalization.
    edited = w.doc.shown_points() + np.float32(1.5)
    with qtbot.waitSignal(w.previewShown, timeout=20000,
                          check_params_cb=lambda r: np.allclose(r.points, edited)) as got:
        w.request_preview(edited)
    assert got.args[0].personal == first and panel.running
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not panel.running, timeout=30000)

    assert steps[-1] < int(LONG_RUN)
    assert any("cancelled" in t for t in texts(w, "info"))
    assert panel.toggle.isChecked() and panel.in_use == first
    assert not panel.bar.isVisible() and panel.button.isEnabled()
    w.request_preview()
    np.testing.assert_array_equal(wait_render(qtbot, w, first), personal)
    assert stored(store_dir) == files                  # the stored one is untouched


@pytest.mark.slow
def test_personalize_closing_the_window_mid_run_cancels_cleanly(
        qtbot, qtlog, make_window, warp_weights, store_dir, monkeypatch):
    monkeypatch.setenv("CAINGAN_PERSONALIZE_STEPS", LONG_RUN)
    w = make_window(warp_weights)
    wait_model(qtbot, w)
    load(qtbot, w, [still(5, 1)])
    panel = w.personalize_panel
    steps = []
    panel.worker.progress.connect(lambda p: steps.append(p.step))
    qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(steps) >= 1, timeout=30000)
    t0 = time.perf_counter()
    assert w.close()
    assert time.perf_counter() - t0 < 15
    assert not panel.running and not w.isVisible()
    qtbot.wait(50)                                      # late signals find a closed window
    assert stored(store_dir) == []                      # nothing kept, nothing half-written
    assert not [r.message for r in qtlog.records if "QThread" in r.message]


# ----------------------------------------------------------------------------- the store

@pytest.mark.slow
def test_personalize_reuses_the_stored_personalization_and_survives_a_damaged_file(
        qtbot, make_window, warp_weights, store_dir):
    photos = [still(3, 1), still(3, 2)]
    w = make_window(warp_weights)
    wait_model(qtbot, w)
    load(qtbot, w, photos)
    personalize(qtbot, w)
    key = w.personalize_panel.in_use
    wait_render(qtbot, w, key)
    w.close()

    # The same photos again (another order): used at once, without fine-tuning.
    w2 = make_window(warp_weights)
    wait_model(qtbot, w2)
    panel = w2.personalize_panel
    started = []
    panel.worker.stage.connect(started.append)
    load(qtbot, w2, photos[::-1])
    qtbot.waitUntil(lambda: panel.toggle.isChecked(), timeout=20000)
    assert panel.in_use == key and panel.toggle.isEnabled()
    assert any("Using your personalization" in t for t in texts(w2, "info"))
    wait_render(qtbot, w2, key)
    assert started == [] and not panel.running
    # Other photos: back to the general model (and the toggle is off).
    w2.remove_sources([w2.source_ids()[0]])
    assert not panel.toggle.isEnabled() and panel.in_use == ""
    wait_render(qtbot, w2, "")
    w2.close()

    # A damaged file: a clear message, the general model, and Personalize replaces it.
    (store_dir / f"{key}.safetensors").write_bytes(b"not a safetensors file")
    w3 = make_window(warp_weights)
    wait_model(qtbot, w3)
    load(qtbot, w3, photos)
    qtbot.waitUntil(lambda: bool(texts(w3, "error")), timeout=20000)
    err = texts(w3, "error")[-1]
    assert "stored personalization" in err and f"{key}.safetensors" in err, err
    assert w3.banner.isVisible() and not w3.personalize_panel.toggle.isEnabled()
    wait_render(qtbot, w3, "")
    personalize(qtbot, w3)
    # Said once the run has ended, in words true then.
    assert any("could not be read" in t and "this run replaced it" in t
               for t in texts(w3, "warning")), texts(w3, "warning")
    assert w3.personalize_panel.in_use == key
    wait_render(qtbot, w3, key)
    from caingan.pipeline.personal_store import PersonalStore
    assert PersonalStore(store_dir).load(key) is not None


@pytest.mark.slow
def test_personalize_one_photo_then_list_and_delete_in_the_dialog(
        qtbot, make_window, warp_weights, store_dir):
    w = make_window(warp_weights)
    wait_model(qtbot, w)
    load(qtbot, w, [still(4, 1)])
    panel = w.personalize_panel
    steps = personalize(qtbot, w)
    assert [p.step for p in steps] == [1, 2, 3] and not texts(w, "error")
    key = panel.in_use
    assert key and "Personalized on 1 photo." in panel.status.text()
    wait_render(qtbot, w, key)
    (store_dir / ("0123456789abcdef" * 2 + ".safetensors")).write_bytes(b"broken")

    menu = next(a.menu() for a in w.menuBar().actions() if a.text() == "&Model")
    manage = next(a for a in menu.actions() if a.text() == "Personalizations…")
    manage.trigger()
    dialog = panel.manager
    assert dialog.isVisible() and dialog.list.count() == 2
    rows = [dialog.list.item(i).text() for i in range(dialog.list.count())]
    mine = dialog.keys().index(key)
    assert f"1 photo(s) ({still(4, 1).name})" in rows[mine] and "in use" in rows[mine], rows
    assert "Damaged" in rows[1 - mine]
    assert str(store_dir) in dialog.folder.text()

    # Deleting the one in use: the preview goes back to the general model.
    dialog.list.item(mine).setSelected(True)
    qtbot.mouseClick(dialog.delete_button, Qt.MouseButton.LeftButton)
    assert not panel.toggle.isEnabled() and panel.in_use == ""
    wait_render(qtbot, w, "")
    assert dialog.list.count() == 1 and key not in dialog.keys()
    dialog.list.item(0).setSelected(True)
    qtbot.mouseClick(dialog.delete_button, Qt.MouseButton.LeftButton)
    assert dialog.list.count() == 0 and stored(store_dir) == []
    assert "No personalizations yet" in dialog.folder.text()


# ----------------------------------------------------------------------------- the photos

@pytest.mark.slow
def test_personalize_sixteen_photos(qtbot, make_window, warp_weights, store_dir, tmp_path):
    from caingan.media.images import load_image, save_image

    person = [still(0, i) for i in range(1, 6)]
    flipped = []
    for p in person:
        flipped.append(tmp_path / f"flipped-{p.name}")
        save_image(flipped[-1], load_image(p)[:, ::-1].copy())
    photos = person + flipped + person + flipped[:1]
    assert len(photos) == 16
    w = make_window(warp_weights)
    wait_model(qtbot, w)
    load(qtbot, w, photos, timeout=90000)
    steps = personalize(qtbot, w)
    # A step per photo for fitting the blend, then the 3 fine-tuning steps.
    assert [p.step for p in steps] == list(range(1, 16 + 3 + 1))
    assert not texts(w, "warning") and not texts(w, "error")     # one person: no warning
    panel = w.personalize_panel
    assert "Personalized on 16 photos." in panel.status.text()
    wait_render(qtbot, w, panel.in_use)


@pytest.mark.slow
def test_personalize_leaves_out_other_people_and_warns_after_the_run_if_used_anyway(
        qtbot, make_window, warp_weights, store_dir):
    """The edited face (person 0) decides who "the person" is, even when most photos show someone
    else; other people's photos are not used unless the user says so, and then the warning,
    given once the run has ended, names them — never the edited photo — and makes sense then."""
    w = make_window(warp_weights)
    wait_model(qtbot, w)
    w.add_files([str(still(0, 1))] + [str(still(6, i)) for i in (1, 2, 3)])
    qtbot.waitUntil(lambda: len(w.source_ids()) == 4, timeout=40000)
    wait_quiet(qtbot, w)
    edited, *others = w.source_ids()
    assert w.target.job_id == edited and w.last_result.source_ids == (edited,)
    panel = w.personalize_panel
    before = len(texts(w, "warning"))             # the photos were marked when added
    personalize(qtbot, w)
    assert "Personalized on 1 photo." in panel.status.text()
    assert len(texts(w, "warning")) == before     # only the edited face was used: nothing to warn

    for i in others:                              # the user mixes them in all the same
        w.sources_panel.select(i)
        qtbot.mouseClick(w.sources_panel.use_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.last_result.source_ids == (edited, *others), timeout=20000)
    personalize(qtbot, w)
    new = texts(w, "warning")[before:]
    assert len(new) == 1, new
    names = ", ".join(still(6, i).name for i in (1, 2, 3))
    assert new[0].startswith(f"{names} look like another person than the face you edit "
                             f"({still(0, 1).name})"), new[0]
    assert "Cancel" not in new[0] and "Personalize again" in new[0]
    assert names in w.banner.text()
    assert "Personalized on 4 photos." in panel.status.text()
    assert w.personalize_panel.toggle.isChecked()          # it ran, with what the user chose


def test_personalize_the_paper_model_gives_a_clear_error(qtbot, make_window):
    w = make_window()                                        # the tiny paper-architecture model
    wait_model(qtbot, w)
    load(qtbot, w, [still(7, 1)])
    panel = w.personalize_panel
    w.resize(1024, 640)
    qtbot.waitUntil(lambda: w.width() == 1024 and w.height() == 640, timeout=5000)
    assert fully_visible(panel.button, w) and fully_visible(panel.toggle, w)
    panel.personalize_action.trigger()
    err = texts(w, "error")
    assert len(err) == 1 and "warp-guided" in err[0] and "paper" in err[0], err
    assert err[0] in w.banner.text()
    assert not panel.running and panel.button.isEnabled() and not panel.toggle.isEnabled()
    wait_render(qtbot, w, "")


@pytest.mark.slow
def test_personalize_by_default_fits_the_blend_of_three_photos(qtbot, make_window, warp_weights,
                                                                store_dir, monkeypatch):
    """The app's own default (no fine-tuning steps asked for): a step per photo, the result says
    which blend renders the photos from each other best, and is stored and used."""
    monkeypatch.delenv("CAINGAN_PERSONALIZE_STEPS")
    w = make_window(warp_weights)
    wait_model(qtbot, w)
    load(qtbot, w, [still(0, i) for i in (1, 2, 3)])
    steps = personalize(qtbot, w)
    assert [p.step for p in steps] == [1, 2, 3] and steps[-1].steps == 3
    assert not texts(w, "error")
    panel = w.personalize_panel
    status = panel.status.text()
    assert "Personalized on 3 photos." in status and "blending" in status and "steps" not in status
    assert "SSIM" not in status and "mix power" not in status     # the numbers: in the tooltip
    assert panel.personalization.summary() in panel.status.toolTip()
    assert len(stored(store_dir)) == 2          # the .safetensors and its .json
    wait_render(qtbot, w, panel.in_use)


@pytest.mark.slow
def test_personalize_result_is_said_in_a_users_words_and_shown_whole(
        qtbot, make_window, warp_weights, store_dir):
    """The result line of a fitted blend (the numbers of a real run on photos: SSIM 0.817 →
    0.829 under mix blur 0.08, mix power 64), then with fine-tuning too, on a 1024×640 screen:
    no internals, nothing cut off."""
    from caingan.pipeline.personalize import Personalization

    w = make_window(warp_weights)
    wait_model(qtbot, w)
    load(qtbot, w, [still(0, i) for i in (1, 2, 3)])
    w.resize(1024, 640)
    qtbot.waitUntil(lambda: w.width() == 1024 and w.height() == 640, timeout=5000)
    panel = w.personalize_panel
    chosen = {"mix_blur": 0.08, "mix_power": 64.0}
    blend = {"chosen": chosen, "ssim": [0.817, 0.82, 0.825, 0.829], "identity": [0.9] * 4,
             "candidates": [{}, {"mix_blur": 0.08}, {"mix_power": 64.0}, chosen]}
    tuned = {"steps": 75, "held_out_loss": [0.2, 0.17], "kept_step": 40}
    import torch

    from caingan.pipeline.inference import Reenactor
    name, param = next(iter(Reenactor.from_checkpoint(warp_weights, device="cpu")
                            .model.named_parameters()))
    change = {name: torch.zeros_like(param, dtype=torch.float16)}     # kept fine-tuned weights
    for extra, deltas, says in (({}, {}, "."), (tuned, change, "; fine-tuned: photos kept aside "
                                                                "rebuilt 15.0 % better.")):
        meta = {"sources": 3, "steps": 0, "blend": blend, "model_config": chosen, **extra}
        p = Personalization(panel._wanted, w.model_info.model_id, deltas, meta)
        panel._use(p)                      # as a run's result is used
        wait_render(qtbot, w, p.key)
        text = panel.status.text()
        assert text == ("Personalized on 3 photos. Blending fitted to your photos: faces "
                        "rebuilt from each other match 1.5 % better" + says), text
        for internal in ("SSIM", "mix", "0.817", "power"):
            assert internal not in text
        assert p.summary() in panel.status.toolTip()          # the numbers, for who wants them
        status = panel.status
        assert status.wordWrap() and status.isVisible()
        qtbot.waitUntil(lambda: status.height() >= status.heightForWidth(status.width()),
                        timeout=5000)
        assert fully_visible(status, w)
