"""`caingan-export --personalize` and the folder personalizations are kept in: a folder that
cannot hold them is refused before the fit, a fit that cannot be stored is still used, and a
damaged stored personalization does not stop the export (the editor does the same)."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from caingan.config import ModelConfig
from caingan.face.landmark_edit import mean_face
from caingan.nn.checkpoint import save_model
from caingan.nn.model import build_network
from caingan.pipeline.export_cli import cli_main

S = 64


@pytest.fixture(scope="module")
def warp_weights(tmp_path_factory) -> Path:
    """A tiny warp-guided model (the kind --personalize needs), random weights."""
    torch.manual_seed(0)
    cfg = ModelConfig(image_size=S, width=0.125, embed_channels=16, max_channels=256, warp=True,
                      output_size=128)
    return save_model(tmp_path_factory.mktemp("w") / "warp", build_network(cfg), cfg)


@pytest.fixture()
def job(warp_weights, stills, tmp_path) -> list[str]:
    """Two real photos of one person, one pose to render; --personalize with 2 tuning steps."""
    pose = tmp_path / "pose.json"
    pose.write_text(json.dumps({"image_size": S, "points": mean_face(float(S)).tolist()}))
    photos = [p for p in stills if p.parent == stills[0].parent][:2]
    args = ["--weights", warp_weights, "--landmarks", pose, "--formats", "png", "--device", "cpu",
            "--personalize", "2", "--quiet"]
    return [str(a) for a in args + [a for p in photos for a in ("--source", p)]]


def _run(capsys, argv) -> tuple[int, str]:
    code = cli_main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.fixture()
def no_fit(monkeypatch):
    """Fails the test if a personalization is fitted."""
    import caingan.pipeline.personalize as personalize

    def refuse(*a, **kw):
        raise AssertionError("fitted although the folder could not keep the result")
    monkeypatch.setattr(personalize, "personalize", refuse)


@pytest.mark.slow
@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_unusable_personal_folder_is_refused_before_the_fit(where, job, tmp_path, capsys,
                                                               monkeypatch, no_fit):
    """$CAINGAN_PERSONAL_DIR naming a file used to run the whole fit, then end in a
    FileExistsError traceback when storing it."""
    blocker = tmp_path / "personal"
    blocker.write_text("not a folder")
    folder = blocker if where == "a file" else blocker / "caingan"
    monkeypatch.setenv("CAINGAN_PERSONAL_DIR", str(folder))
    code, err = _run(capsys, job + ["--out", tmp_path / "o"])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("caingan-export: error: "), err
    assert f"the personalization folder {folder}" in lines[0] and "CAINGAN_PERSONAL_DIR" in err
    assert ("is a file, not a folder" if where == "a file" else "cannot be written") in err
    assert not (tmp_path / "o").exists()                         # nothing was started


@pytest.mark.slow
def test_a_fit_that_cannot_be_stored_is_still_used_with_a_warning(job, tmp_path, capsys,
                                                                 monkeypatch):
    """The folder was fine when checked, the disk filled up during the fit: the export goes on
    with the fit and says it was not kept."""
    from caingan.pipeline.personal_store import PersonalStore

    def disk_full(self, p, labels=None):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(PersonalStore, "save", disk_full)
    store = tmp_path / "store"
    code, err = _run(capsys, job + ["--personal-dir", store, "--out", tmp_path / "p"])
    assert code == 0, err
    assert f"caingan-export: warning: the personalization is used now but could not be kept in " \
           f"{store} for next time: No space left on device" in err
    assert "Traceback" not in err and not list(store.glob("*.safetensors"))
    monkeypatch.undo()
    # The frame is the personalized one: the same as a run whose fit was stored.
    code, err = _run(capsys, job + ["--personal-dir", store, "--out", tmp_path / "q"])
    assert code == 0, err
    p, q = (np.asarray(Image.open(tmp_path / d / "frame_000000.png")) for d in "pq")
    assert np.array_equal(p, q)


@pytest.mark.slow
def test_a_damaged_stored_personalization_is_fitted_again_and_named(job, tmp_path, capsys):
    """It used to stop the export (exit 2) while the editor went on without it."""
    from caingan.nn.checkpoint import load_checkpoint

    store = tmp_path / "store"
    code, err = _run(capsys, job + ["--personal-dir", store, "--out", tmp_path / "a"])
    assert code == 0, err
    [st] = store.glob("*.safetensors")
    js = st.with_suffix(".json")
    good = st.read_bytes()
    st.write_bytes(good[: len(good) // 2])                       # a copy cut short
    code, err = _run(capsys, job + ["--personal-dir", store, "--out", tmp_path / "b"])
    assert code == 0, err
    warning = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warning) == 1 and str(st) in warning[0] and "truncated" in warning[0], err
    assert f"delete {st} and {js}" in warning[0] and "Traceback" not in err
    load_checkpoint(st)                                          # replaced by the new fit
    code, err = _run(capsys, job + ["--personal-dir", store, "--out", tmp_path / "c"])
    assert code == 0 and "warning" not in err, err
    a, b = (np.asarray(Image.open(tmp_path / d / "frame_000000.png")) for d in "ab")
    assert np.array_equal(a, b)
