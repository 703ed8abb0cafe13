"""Ctrl-C on every command, as a user at a terminal gives it: exit status 130 and one line
"<command>: interrupted", never a traceback — while the command's heavy modules (torch, OpenCV,
Qt) are still importing, and while the editor runs. Each command runs as its console script
does (the entry named in pyproject.toml) in a process of its own, which gets SIGINT."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
# A library that only the heavy imports map: once one is in the process, it is importing them.
HEAVY = re.compile(r"libtorch_cpu|/cv2/|libQt6Core|dlib")

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(),
                                reason="watches /proc/PID/maps to catch the imports")


def _default_sigint() -> None:
    """Ctrl-C's default action in the child, as from a terminal (a shell running the tests in
    the background would otherwise hand it on ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def launch(script: str, *argv, env: dict | None = None) -> subprocess.Popen:
    """The console script `script` as pip's launcher runs it: import the entry, call it."""
    module, func = SCRIPTS[script].split(":")
    code = f"import sys; from {module} import {func}; sys.exit({func}())"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", QT_QPA_PLATFORM="offscreen",
               **(env or {}))
    return subprocess.Popen([sys.executable, "-c", code, *map(str, argv)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def wait_for_heavy_imports(proc: subprocess.Popen, timeout: float = 120) -> None:
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if HEAVY.search(maps.read_text()):
                return
        except OSError:
            pass
        time.sleep(0.005)
    raise AssertionError(f"never saw the heavy imports start: {proc.communicate()}")


def interrupt(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()


def assert_interrupted(proc: subprocess.Popen, out: str, err: str, prog: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 130, err
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: interrupted"), err
    assert "Traceback" not in err and out == ""


@pytest.mark.parametrize("script", ["caingan-export", "caingan-prepare", "caingan-train",
                                    "caingan-eval", "caingan-app"])
@pytest.mark.slow
def test_ctrl_c_during_the_imports_at_start_up(script, tmp_path):
    """It used to print a KeyboardInterrupt traceback from inside `import torch` (or cv2)."""
    argv = {
        "caingan-export": ["--source", tmp_path / "me.png", "--landmarks", tmp_path / "p.json",
                           "--out", tmp_path / "o"],
        "caingan-prepare": ["--data", tmp_path, "--out", tmp_path / "cache"],
        "caingan-train": ["--cache", tmp_path / "cache", "--run-dir", tmp_path / "run"],
        "caingan-eval": ["--help"],
        "caingan-app": ["--no-sample"],
    }[script]
    proc = launch(script, *argv)
    wait_for_heavy_imports(proc)
    out, err = interrupt(proc)
    assert_interrupted(proc, out, err, script)


APP_HARNESS = r"""
import sys
import app.main_window as mw

class Shown(mw.MainWindow):
    def show(self):
        super().show()
        print("shown", flush=True)

mw.MainWindow = Shown
from app.run import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_ctrl_c_while_the_editor_runs_closes_it_with_130(tmp_path):
    """Qt's event loop keeps Python from running signal handlers; Ctrl-C used to do nothing
    until the next Python slot ran, then print a traceback there and leave the editor open."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen([sys.executable, "-c", APP_HARNESS, "--no-sample"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    try:
        line = proc.stdout.readline()
        assert line == "shown\n", (line, proc.communicate(timeout=60))
        time.sleep(0.5)                   # inside app.exec() by now
    except BaseException:
        proc.kill()
        raise
    out, err = interrupt(proc)
    assert proc.returncode == 130, err
    assert [ln for ln in err.splitlines() if "interrupted" in ln] == ["caingan-app: interrupted"]
    assert "Traceback" not in err and out == ""


@pytest.mark.slow
def test_ctrl_c_during_training_saves_a_checkpoint_and_exits_130(tiny_cache, tmp_path):
    """Ctrl-C reaches every process of the job (the data worker too); the trainer finishes its
    step, saves, and ends with 130 and one line (it used to say 'signal 2' and end 0)."""
    from caingan.config import ModelConfig
    from train import state as st
    from train.config import TrainConfig

    run = tmp_path / "run"
    cfg = TrainConfig(cache=str(tiny_cache), run_dir=str(run), model=ModelConfig.tiny(64), k=2,
                      batch_size=2, samples_per_clip=2, val_groups=0, num_workers=1,
                      perceptual="none", save_every=1000, log_every=1, image_every=1000, seed=3,
                      max_steps=400)
    cfg.save(tmp_path / "run.json")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    module, func = SCRIPTS["caingan-train"].split(":")
    proc = subprocess.Popen([sys.executable, "-c", f"import sys; from {module} import {func}; "
                             f"sys.exit({func}())", "--config", tmp_path / "run.json",
                             "--run-dir", run], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=_default_sigint)
    try:
        log, deadline = run / "log.jsonl", time.monotonic() + 180
        while (not log.is_file() or len(log.read_text().splitlines()) < 3) \
                and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert log.is_file() and not st.list_checkpoints(run), proc.poll()
        os.killpg(proc.pid, signal.SIGINT)          # what a terminal does on Ctrl-C
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    said = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert said == ["caingan-train: interrupted; saving a checkpoint and stopping…"], err
    assert "Traceback" not in err
    assert st.list_checkpoints(run)
