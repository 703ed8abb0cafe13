"""Training: the objective learns, resume is exact, kill -9 is survivable, DDP stays in sync;
the command line offers every config field and a resumed run keeps its own config."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from caingan.config import ModelConfig
from caingan.nn.checkpoint import load_model
from caingan.nn.warp_model import WarpCainGAN
from train import state as st
from train.bundle import export, warm_start
from train.distributed import DistInfo
from train.config import TrainConfig
from train.config import from_command_line
from train.train import Trainer, build_generator, main as train_main

REPO = Path(__file__).resolve().parents[1]


def tiny_config(cache: Path, run_dir: Path, **kw) -> TrainConfig:
    base = dict(cache=str(cache), run_dir=str(run_dir), model=ModelConfig.tiny(64), k=2,
                batch_size=2, samples_per_clip=2, val_groups=0, num_workers=0, perceptual="none",
                save_every=1000, log_every=1, image_every=1000, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def args_for(cfg: TrainConfig) -> list[str]:
    cfg_path = Path(cfg.run_dir).with_suffix(".json")
    Path(cfg.run_dir).parent.mkdir(parents=True, exist_ok=True)
    cfg.save(cfg_path)
    return ["--config", str(cfg_path), "--run-dir", cfg.run_dir]


def read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def final_gen(run_dir: Path) -> dict[str, torch.Tensor]:
    from caingan.nn.checkpoint import load_checkpoint
    _, path = st.list_checkpoints(run_dir)[-1]
    tensors, _ = load_checkpoint(path, kind=st.KIND)
    return {k: v for k, v in tensors.items() if k.startswith("gen.")}


@pytest.mark.slow
def test_reconstruction_loss_decreases(tiny_cache, tmp_path):
    cfg = tiny_config(tiny_cache, tmp_path / "run", max_steps=40, perceptual="vgg16_hed",
                      samples_per_clip=1, lr_g=1e-3)
    assert train_main(args_for(cfg)) == 0
    l1 = [row["g/l1"] for row in read_log(tmp_path / "run") if "g/l1" in row]
    assert len(l1) == 40
    assert np.mean(l1[-8:]) < 0.8 * np.mean(l1[:5]), l1


@pytest.mark.slow
def test_resume_gives_the_same_state_as_an_uninterrupted_run(tiny_cache, tmp_path):
    straight = tiny_config(tiny_cache, tmp_path / "straight", max_steps=6)
    assert train_main(args_for(straight)) == 0
    split = tiny_config(tiny_cache, tmp_path / "split", max_steps=3)
    assert train_main(args_for(split)) == 0
    # Same command, longer budget: picks up the step-3 checkpoint and goes on.
    assert train_main(["--run-dir", split.run_dir, "--max-steps", "6"]) == 0
    a, b = final_gen(tmp_path / "straight"), final_gen(tmp_path / "split")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


@pytest.mark.slow
def test_kill_9_then_same_command_resumes(tiny_cache, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(tiny_cache, run, max_steps=400, save_every=1)
    cmd = [sys.executable, "-m", "train.train", *args_for(cfg)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while len(st.list_checkpoints(run)) < 2 and time.time() < deadline:
            time.sleep(0.2)
        assert len(st.list_checkpoints(run)) >= 2, "training never wrote checkpoints"
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = st.list_checkpoints(run)
    assert done
    last_step = done[-1][0]
    out = subprocess.run([sys.executable, "-m", "train.train", "--run-dir", str(run),
                          "--max-steps", str(last_step + 2)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "resumed from" in out.stdout
    assert st.list_checkpoints(run)[-1][0] == last_step + 2


@pytest.mark.slow
def test_sigterm_to_the_process_group_saves_and_stops(tiny_cache, tmp_path):
    """A scheduler or Ctrl+C signals every process of the job, data workers included."""
    run = tmp_path / "run"
    cfg = tiny_config(tiny_cache, run, max_steps=400, save_every=1000, num_workers=1)
    cmd = [sys.executable, "-m", "train.train", *args_for(cfg)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.time() + 120
        log = run / "log.jsonl"
        while (not log.is_file() or len(log.read_text().splitlines()) < 3) and time.time() < deadline:
            time.sleep(0.2)
        assert log.is_file(), "training never logged a step"
        assert not st.list_checkpoints(run), "no checkpoint expected before the signal"
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    saved = st.list_checkpoints(run)
    assert saved and saved[-1][0] >= 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg_dict: dict, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from safetensors.torch import save_file
    from train.distributed import cleanup, init_distributed
    cfg = TrainConfig.from_dict(cfg_dict)
    info = init_distributed(torch.device("cpu"))
    trainer = Trainer(cfg, torch.device("cpu"), info)
    assert trainer.run() == 0
    sd = {k: v.contiguous() for k, v in trainer.gen.state_dict().items()}
    save_file(sd, str(Path(out_dir) / f"rank{rank}.safetensors"))
    cleanup(info)


@pytest.mark.slow
def test_ddp_two_processes_on_gloo_stay_in_sync(tiny_cache, tmp_path):
    from safetensors.torch import load_file
    cfg = tiny_config(tiny_cache, tmp_path / "ddp", max_steps=3)
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), cfg.to_dict(), str(tmp_path)),
                                nprocs=2, join=True)
    a = load_file(str(tmp_path / "rank0.safetensors"))
    b = load_file(str(tmp_path / "rank1.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    # and training really changed the weights (not two untouched copies)
    torch.manual_seed(cfg.seed)
    fresh = build_generator(cfg).state_dict()
    moved = any(not torch.equal(fresh[k], a[k]) for k in a if fresh[k].dtype.is_floating_point)
    assert moved


def test_missing_cache_is_a_clear_error(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "nope", tmp_path / "run", max_steps=1)
    assert train_main(args_for(cfg)) == 2
    err = capsys.readouterr().err
    assert "nope" in err


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_cache, tmp_path, monkeypatch, capsys):
    import train.train as tt
    real = tt.hinge_g_loss
    calls = {"n": 0}

    def poisoned(outs):
        calls["n"] += 1
        loss = real(outs)
        return loss * float("nan") if calls["n"] > 6 else loss  # 2 calls per G step

    monkeypatch.setattr(tt, "hinge_g_loss", poisoned)
    run = tmp_path / "run"
    cfg = tiny_config(tiny_cache, run, max_steps=10, save_every=1)
    assert train_main(args_for(cfg)) == tt.EXIT_NAN
    assert "loss became nan" in capsys.readouterr().err
    steps = [s for s, _ in st.list_checkpoints(run)]
    assert steps and steps[-1] == 3
    final_gen(run)  # loads: nothing corrupt
    for v in final_gen(run).values():
        assert torch.isfinite(v.float()).all()


def test_ablation_switches(tmp_path):
    from caingan.face.landmark_image import landmark_images
    from caingan.nn.model import CainGAN
    cfg = TrainConfig(cache="x", ablations=("wo_t", "wo_r", "wo_i"), model=ModelConfig.tiny(64))
    assert cfg.model.targeted is False and cfg.model.responsibility is False
    assert cfg.lambda_i_at(0.0) == cfg.lambda_p
    normal = TrainConfig(cache="x")
    assert normal.lambda_i_at(0.0) == 0.0
    assert normal.lambda_i_at(5.0) == pytest.approx(0.5 * normal.lambda_i)
    assert normal.lambda_i_at(20.0) == normal.lambda_i

    torch.manual_seed(0)
    model = CainGAN(cfg.model).eval()
    src = torch.rand(1, 3, 3, 64, 64) * 2 - 1
    pts = torch.rand(1, 3, 68, 2) * 40 + 12
    src_lm = landmark_images(pts.reshape(3, 68, 2), 64).reshape(1, 3, 3, 64, 64)
    t1 = landmark_images(torch.rand(1, 68, 2) * 40 + 12, 64)
    t2 = landmark_images(torch.rand(1, 68, 2) * 40 + 12, 64)
    with torch.no_grad():
        e1, r1 = model.embedder(src, src_lm, t1)
        e2, r2 = model.embedder(src, src_lm, t2)
        _, w = model(src, src_lm, t1)
    torch.testing.assert_close(e1, e2)  # w/o T: the target landmarks do not reach the embedding
    torch.testing.assert_close(w, torch.full_like(w, 1 / 3))  # w/o R: plain mean

    targeted = CainGAN(ModelConfig.tiny(64)).eval()
    with torch.no_grad():
        e1, _ = targeted.embedder(src, src_lm, t1)
        e2, _ = targeted.embedder(src, src_lm, t2)
    assert not torch.allclose(e1, e2)


def test_ablations_do_not_change_the_callers_model_config():
    model = ModelConfig.tiny(64)
    before = ModelConfig.tiny(64)
    cfg = TrainConfig(cache="x", model=model, ablations=("wo_t", "wo_r"))
    assert cfg.model.targeted is False and cfg.model.responsibility is False
    assert model == before and model.targeted and model.responsibility
    again = TrainConfig(cache="x", model=model)
    assert again.model.targeted and again.model.responsibility


def test_every_config_field_is_a_command_line_flag(capsys):
    with pytest.raises(SystemExit) as info:
        train_main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    fields = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in ("model", "ablations")]
    fields += [f.name for f in dataclasses.fields(ModelConfig) if f.name != "baselines"]
    fields += ["pix2pixhd_blocks", "fshm_res_blocks", "ablation", "config", "preset", "init_from"]
    missing = [n for n in fields if f"--{n.replace('_', '-')}" not in text]
    assert not missing, missing


def test_command_line_layers_config_file_preset_and_flags(tmp_path):
    start = TrainConfig(cache="from-file", k=3, lr_g=0.5, ablations=("wo_r",))
    start.save(tmp_path / "start.json")
    cfg, init_from = from_command_line([
        "--config", str(tmp_path / "start.json"), "--run-dir", str(tmp_path / "run"),
        "--preset", "tiny", "--image-size", "96", "--width", "0.5", "--k", "4",
        "--ablation", "wo_t", "--ablation", "wo_i", "--lr-d", "0.001", "--betas", "0.5", "0.99",
        "--no-responsibility", "--pix2pixhd-blocks", "3", "--arch", "fshm", "--amp", "none",
        "--init-from", "assets"])
    assert (cfg.cache, cfg.lr_g, cfg.k, cfg.lr_d, cfg.betas) == ("from-file", 0.5, 4, 0.001, (0.5, 0.99))
    tiny = ModelConfig.tiny()
    assert cfg.model.embed_channels == tiny.embed_channels and cfg.model.max_channels == tiny.max_channels
    assert (cfg.model.image_size, cfg.model.width) == (96, 0.5)
    assert cfg.ablations == ("wo_t", "wo_i")  # given ablations replace the file's
    assert cfg.model.targeted is False and cfg.model.responsibility is False
    assert cfg.model.baselines.pix2pixhd_blocks == 3
    assert (cfg.arch, cfg.amp, cfg.run_dir, init_from) == ("fshm", "none", str(tmp_path / "run"), "assets")
    kept, _ = from_command_line(["--config", str(tmp_path / "start.json")])
    assert kept.ablations == ("wo_r",)
    assert kept.model == dataclasses.replace(ModelConfig.small(), responsibility=False)


@pytest.mark.parametrize("argv, message", [
    (["--image-size", "100"], "multiple of 16"),
    (["--width", "200"], "width"),
    (["--ablation", "wo_x"], "wo_x"),
    (["--k", "many"], "many"),
    (["--colour", "red"], "colour"),
])
def test_bad_command_lines_are_refused_by_name(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        train_main(["--cache", str(tmp_path), "--run-dir", str(tmp_path / "run"), *argv])
    assert info.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.out + captured.err
    assert not (tmp_path / "run").exists()


def test_resumed_run_keeps_its_config_and_says_what_it_ignored(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    TrainConfig(cache="c", run_dir=str(run), k=2, model=ModelConfig.tiny(64), ablations=("wo_r",)
                ).save(run / "config.json")
    cfg, _ = from_command_line(["--run-dir", str(run), "--max-steps", "6", "--k", "8",
                                "--width", "0.5", "--preset", "small"])
    assert cfg.max_steps == 6
    assert cfg.k == 2 and cfg.ablations == ("wo_r",)
    assert cfg.model == dataclasses.replace(ModelConfig.tiny(64), responsibility=False)
    err = capsys.readouterr().err
    assert "warning" in err and "k" in err and "model" in err and "--preset" in err
    assert "max_steps" not in err.split("ignored:")[1].split("(only")[0]


def tiny_warp_model() -> ModelConfig:
    return dataclasses.replace(ModelConfig.tiny(64), warp=True, output_size=64)


@pytest.mark.slow
def test_warp_model_trains_bundles_under_its_name_and_warm_starts(tiny_cache, tmp_path):
    cfg = tiny_config(tiny_cache, tmp_path / "run", model=tiny_warp_model(), max_steps=12,
                      d_steps=0, lambda_l1=10.0, lambda_region=10.0, lr_g=1e-3, betas=(0.9, 0.999))
    assert train_main(args_for(cfg)) == 0
    rows = [r for r in read_log(tmp_path / "run") if "g/l1" in r]
    assert "g/l1_eyes_mouth" in rows[0] and rows[0]["g/adv"] == 0.0   # no discriminator
    assert "g/l1_generator" not in rows[0]
    model_path, disc_path = export(tmp_path / "run", tmp_path / "assets")
    assert model_path.name == "caingan-warp.safetensors"
    assert disc_path.name == "caingan-warp-discriminators.safetensors"
    shipped = load_model(model_path)
    assert isinstance(shipped, WarpCainGAN)
    # A new run warm-starts from the shipped folder with exactly those weights.
    warm = tiny_config(tiny_cache, tmp_path / "warm", model=tiny_warp_model(), max_steps=0, d_steps=0)
    trainer = Trainer(warm, torch.device("cpu"), DistInfo())
    warm_start(trainer, tmp_path / "assets")
    for (name, a), b in zip(trainer.gen.state_dict().items(), shipped.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_warp_model_generator_use_losses_train_the_generator_and_its_mask(tiny_cache, tmp_path):
    cfg = tiny_config(tiny_cache, tmp_path / "run", model=tiny_warp_model(), max_steps=10,
                      d_steps=0, lambda_l1=10.0, lambda_region=10.0, lambda_gen=10.0,
                      lambda_mask=1.0, lr_g=1e-3, betas=(0.9, 0.999))
    assert train_main(args_for(cfg)) == 0
    rows = [r for r in read_log(tmp_path / "run") if "g/l1" in r]
    assert rows and all(r["g/l1_generator"] > 0 and r["g/mask_oracle"] > 0 for r in rows)
    assert 0 < rows[-1]["g/mask_mean"] < 1
