"""Checkpoints: exact round trip, atomic files, and every damaged/mismatched case refused by name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from caingan.nn.checkpoint import (FORMAT, FORMAT_VERSION, MODEL_KIND, load_checkpoint, load_model,
                                load_module_state, read_meta, save_checkpoint, save_model)
from caingan.config import ModelConfig
from caingan.errors import CheckpointError
from caingan.nn.model import CainGAN, build_network


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(64)
    model = CainGAN(cfg).eval()
    path = save_model(tmp_path / "m.safetensors", model, cfg, {"step": 7})
    return path, model, cfg


def test_model_round_trip_gives_identical_output(saved):
    path, model, cfg = saved
    loaded = load_model(path)
    assert loaded.cfg == cfg and not loaded.training
    assert loaded.checkpoint_meta["extra"] == {"step": 7}
    g = torch.Generator().manual_seed(3)
    src = torch.rand(1, 2, 3, 64, 64, generator=g) * 2 - 1
    lms = torch.rand(1, 2, 3, 64, 64, generator=g) * 2 - 1
    tgt = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    with torch.no_grad():
        a, wa = model(src, lms, tgt)
        b, wb = loaded(src, lms, tgt)
    assert torch.equal(a, b) and torch.equal(wa, wb)


def test_sidecar_content_and_no_temp_files(saved):
    path, model, cfg = saved
    assert path.suffix == ".safetensors"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["format"] == FORMAT and meta["format_version"] == FORMAT_VERSION
    assert meta["kind"] == MODEL_KIND and meta["config"] == cfg.to_dict()
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.json", "m.safetensors"]


def test_generic_tensors_and_meta_round_trip(tmp_path):
    base = torch.arange(12.0).view(3, 4)
    tensors = {"a": base, "view": base.t(), "same_storage": base[1], "i": torch.tensor([1, 2], dtype=torch.int64)}
    save_checkpoint(tmp_path / "s", tensors, {"kind": "test", "config": {"x": 1}, "note": [1, "b"]})
    out, meta = load_checkpoint(tmp_path / "s.safetensors", kind="test")
    for k, v in tensors.items():
        assert torch.equal(out[k], v), k
    assert meta["note"] == [1, "b"] and meta["config"] == {"x": 1}
    with pytest.raises(CheckpointError, match="kind"):
        save_checkpoint(tmp_path / "t", tensors, {"config": {}})


def test_unserialisable_meta_leaves_no_files(tmp_path):
    with pytest.raises(CheckpointError, match="serialise"):
        save_checkpoint(tmp_path / "u", {"a": torch.zeros(1)}, {"kind": "x", "bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_missing_files_are_named(saved, tmp_path):
    path, _, _ = saved
    with pytest.raises(CheckpointError, match="nope.safetensors.*not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    path.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match=r"m\.json.*sidecar.*missing"):
        load_model(path)


@pytest.mark.parametrize("edit, message", [
    (lambda m: "{not json", "unreadable"),
    (lambda m: json.dumps({**m, "format": "other"}), "not a CainGAN checkpoint"),
    (lambda m: json.dumps({**m, "format_version": 99}), "version 99"),
    (lambda m: json.dumps({**m, "kind": "caingan-train-state"}), "expected 'caingan-model'"),
    (lambda m: json.dumps({**m, "config": {**m["config"], "colour": 1}}), "invalid model config"),
])
def test_bad_sidecars_are_refused(saved, edit, message):
    path, _, _ = saved
    side = path.with_suffix(".json")
    side.write_text(edit(json.loads(side.read_text())))
    with pytest.raises(CheckpointError, match=message) as info:
        load_model(path)
    assert "m.safetensors" in str(info.value) or "m.json" in str(info.value)


def test_truncated_tensor_file_is_refused(saved):
    path, _, _ = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated") as info:
        load_model(path)
    assert str(path) in str(info.value)
    # a sidecar without the size record still ends in a named error, from safetensors itself
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text())
    del meta["tensor_file_bytes"]
    side.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        load_model(path)
    assert str(path) in str(info.value)


def test_mismatched_weights_are_listed(saved, tmp_path):
    path, model, cfg = saved
    tensors, _ = load_checkpoint(path)
    wider = CainGAN(ModelConfig.from_dict({**cfg.to_dict(), "embed_channels": 24}))
    with pytest.raises(CheckpointError, match="shape mismatch") as info:
        load_module_state(wider, tensors, path)
    assert str(path) in str(info.value) and "head_e" in str(info.value)
    del tensors["generator.out.weight"]
    tensors["extra.thing"] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_module_state(model, tensors, path)
    msg = str(info.value)
    assert "1 missing key(s): generator.out.weight" in msg and "1 unexpected key(s): extra.thing" in msg
    # a whole file whose weights do not fit its config
    save_checkpoint(tmp_path / "bad", tensors, {"kind": MODEL_KIND, "config": cfg.to_dict()})
    with pytest.raises(CheckpointError, match="bad.safetensors.*missing"):
        load_model(tmp_path / "bad.safetensors")


def test_read_meta_is_cheap_and_validates(saved):
    path, _, cfg = saved
    assert read_meta(path, MODEL_KIND)["config"] == cfg.to_dict()
    with pytest.raises(CheckpointError):
        read_meta(path, "other")


def test_configs_from_before_typed_baseline_sizes_still_load(saved):
    """Older sidecars carry `"extra": {}` (or baseline sizes in it) inside the model config."""
    path, model, cfg = saved
    side = path.with_suffix(".json")
    meta = json.loads(side.read_text())
    del meta["config"]["baselines"]
    side.write_text(json.dumps({**meta, "config": {**meta["config"], "extra": {}}}))
    assert load_model(path).cfg == cfg
    old = ModelConfig.from_dict({**meta["config"], "extra": {"pix2pixhd_blocks": 3}})
    assert old.baselines.pix2pixhd_blocks == 3 and old.baselines.fshm_res_blocks == 5
    for bad in ({"extra": {"colour": 1}}, {"baselines": {"colour": 1}}):
        with pytest.raises(ValueError, match="unknown .*colour"):
            ModelConfig.from_dict({**meta["config"], **bad})


def test_render_settings_ride_beside_the_config_and_older_sidecars_keep_theirs(tmp_path):
    """A warp-guided model's sidecar holds its architecture under "config" and its render
    settings under "render". An older sidecar held the render settings among the config's
    fields: those load as its render settings (a field it lacks at the value the code then
    assumed), its retired options are ignored, and a bad value is refused naming the file."""
    from caingan.config import LEGACY_RENDER, RenderSettings
    from caingan.nn.checkpoint import render_settings
    from caingan.pipeline.inference import Reenactor

    torch.manual_seed(0)
    cfg = ModelConfig(image_size=64, width=0.125, embed_channels=16, max_channels=256, warp=True,
                      output_size=128)
    settings = RenderSettings(output_size=128, mix_power=4.0, gen_region="mouth")
    path = save_model(tmp_path / "w", build_network(cfg), cfg, settings=settings)
    meta = read_meta(path)
    assert meta["config"] == cfg.to_dict() and meta["render"] == settings.to_dict()
    assert Reenactor.from_checkpoint(path, device="cpu").settings == settings

    side = path.with_suffix(".json")
    old = {k: v for k, v in meta.items() if k != "render"}
    old["config"] = {**old["config"], "mix_power": 16.0, "eyelids": True, "learned_flow": False,
                     "affine_region": "face", "warp_field": "tps", "field_smooth": 0.0}
    side.write_text(json.dumps(old))
    r = Reenactor.from_checkpoint(path, device="cpu")
    assert r.config == cfg
    assert r.settings == RenderSettings(output_size=128, **{**LEGACY_RENDER, "mix_power": 16.0,
                                                             "eyelids": True})
    for bad, where in (({**old, "config": {**old["config"], "mix_power": -1.0}}, "mix_power"),
                       ({**meta, "render": {**meta["render"], "gen_region": "eyes"}}, "gen_region"),
                       ({**meta, "render": {**meta["render"], "learned_flow": True}}, "learned_flow")):
        side.write_text(json.dumps(bad))
        with pytest.raises(CheckpointError, match=f"w.json: invalid render settings.*{where}"):
            load_model(path)
    assert render_settings(read_meta(path), ModelConfig.tiny(64), path) is None   # the paper's: none


# Run in a child process whose address space is capped at 4 GB: building the network such a
# config describes would need tens of GB, so only a refusal before allocating gets through.
_LOAD_UNDER_MEMORY_CAP = r"""
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from caingan.nn.checkpoint import load_model
from caingan.errors import CheckpointError
path = sys.argv[1]
side = path[: -len(".safetensors")] + ".json"
meta = json.load(open(side))
for edit in json.loads(sys.argv[2]):
    json.dump({**meta, "config": {**meta["config"], **edit}}, open(side, "w"))
    try:
        load_model(path)
        print("LOADED", edit)
    except CheckpointError as exc:
        print("REFUSED", exc)
"""


@pytest.mark.slow
def test_oversized_or_malformed_configs_are_refused_before_allocating(saved):
    import subprocess
    import sys
    from pathlib import Path

    path, _, _ = saved
    edits = [{"width": 200, "max_channels": 100000}, {"image_size": 100000},
             {"image_size": 100}, {"max_channels": 10 ** 6}, {"embed_channels": 0},
             {"width": -1}, {"targeted": "yes"}, {"image_size": 64.5}]
    out = subprocess.run([sys.executable, "-c", _LOAD_UNDER_MEMORY_CAP, str(path), json.dumps(edits)],
                         capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert len(lines) == len(edits), out.stdout
    for edit, line in zip(edits, lines):
        assert line.startswith("REFUSED") and "invalid model config" in line, (edit, line)
        assert "m.json" in line and any(name in line for name in edit), (edit, line)


def test_a_folder_given_as_weights_is_named_a_folder(saved, tmp_path):
    """A folder is not 'not found' (and safetensors said 'No such file or directory')."""
    with pytest.raises(CheckpointError, match=f"{tmp_path}: is a folder, not a weights file"):
        load_model(tmp_path)
    folder = tmp_path / "w.safetensors"
    folder.mkdir()
    (tmp_path / "w.json").write_text(saved[0].with_suffix(".json").read_text())
    for given in (folder, tmp_path / "w", tmp_path / "w.json"):
        with pytest.raises(CheckpointError, match=f"{folder}: is a folder, not a weights file"):
            load_model(given)


_READ_AS_NOBODY = """
import sys
from caingan.errors import CheckpointError
from caingan.nn.checkpoint import load_model
try:
    load_model(sys.argv[1])
except CheckpointError as e:
    print(e)
"""


def _others_can_reach(path: Path) -> bool:
    """Every folder above `path` can be entered by other users (the checkout: its code and venv)."""
    return all(os.stat(p).st_mode & 0o001 for p in Path(path).resolve().parents)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["safetensors", "json"])
def test_unreadable_weights_say_they_cannot_be_read_and_why(saved, which):
    """chmod 000 on the weights (or the sidecar): 'cannot be read (Permission denied)', not the
    'No such file or directory' safetensors reports. Root reads any file, so as root the load
    runs in a child process as user nobody."""
    import shutil
    import subprocess
    import sys
    import tempfile

    path, _, _ = saved
    folder = tempfile.mkdtemp(prefix="caingan-unreadable-")
    try:
        os.chmod(folder, 0o755)
        for p in (path, path.with_suffix(".json")):
            shutil.copy(p, folder)
        victim = os.path.join(folder, f"m.{which}")
        weights = os.path.join(folder, "m.safetensors")
        os.chmod(victim, 0)
        if os.geteuid() != 0:
            with pytest.raises(CheckpointError) as info:
                load_model(weights)
            message = str(info.value)
        else:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv to drop to another user")
            if not _others_can_reach(Path(__file__)):
                pytest.skip("running as root in a checkout other users cannot reach (a private "
                            "folder above it): the load cannot run as user nobody")
            res = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                                  sys.executable, "-c", _READ_AS_NOBODY, weights],
                                 capture_output=True, text=True, timeout=120,
                                 cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            assert res.returncode == 0, res.stderr[-2000:]
            message = res.stdout.strip()
        assert message.startswith(f"{victim}: ") and "cannot be read (Permission denied)" in message
        assert "No such file" not in message
    finally:
        shutil.rmtree(folder, ignore_errors=True)
