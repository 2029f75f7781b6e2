"""Checkpoints: pickle-free round trips, exact optimizer resumption, atomic saves, clear errors."""

import ast
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from wmkit import checkpoint as ckpt
from wmkit.checkpoint import CheckpointError, find_latest, load_checkpoint, resolve_checkpoint, save_checkpoint


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def train_steps(model, opt, n, seed):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(16, 4, generator=gen)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def save(run, step, model=None, **kw):
    model = model or make_model()
    return save_checkpoint(run, step, model.state_dict(), {"epoch": 1}, **kw)


def test_model_round_trip_gives_identical_outputs(tmp_path):
    model = make_model()
    model.train()
    model(torch.randn(32, 4))  # move the BatchNorm running statistics and num_batches_tracked
    model.eval()
    folder = save_checkpoint(tmp_path / "run", 7, model.state_dict(), {"config": {"lr": 1e-3}, "epoch": 2})
    assert folder == tmp_path / "run" / "checkpoints" / "step-00000007"
    loaded = load_checkpoint(tmp_path / "run")
    assert loaded.path == folder and loaded.step == 7
    assert loaded.meta == {"config": {"lr": 1e-3}, "epoch": 2, "step": 7}
    assert loaded.optimizer_state is None and loaded.extra == {}
    assert loaded.model_state["1.num_batches_tracked"].dtype == torch.int64
    assert loaded.model_state["1.num_batches_tracked"].item() == 1
    fresh = make_model(seed=1).eval()
    fresh.load_state_dict(loaded.model_state)
    x = torch.randn(5, 4)
    assert torch.equal(fresh(x), model(x))
    trainer = json.loads((folder / "trainer.json").read_text())
    assert trainer["format"] == "wmkit-checkpoint" and trainer["format_version"] == 1


def test_shared_and_noncontiguous_tensors_are_saved(tmp_path):
    w = torch.randn(6, 6)
    state = {"a": w, "tied": w, "slice": w[2:], "t": w.t(), "empty": torch.zeros(0), "empty2": torch.zeros(0, 3)}
    save_checkpoint(tmp_path, 0, state, {})
    loaded = load_checkpoint(tmp_path).model_state
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k


def test_adamw_resumes_bit_identically(tmp_path):
    model = make_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1)
    train_steps(model, opt, 3, seed=1)
    save_checkpoint(tmp_path, 3, model.state_dict(), {}, optimizer_state=opt.state_dict())
    assert json.loads((tmp_path / "checkpoints" / "step-00000003" / "optimizer.json").read_text())["param_groups"][0]["betas"] == [0.8, 0.95]

    loaded = load_checkpoint(tmp_path)
    model2 = make_model(seed=5)
    model2.load_state_dict(loaded.model_state)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.5)  # wrong hyperparameters: the checkpoint restores them
    opt2.load_state_dict(loaded.optimizer_state)
    train_steps(model, opt, 3, seed=2)
    train_steps(model2, opt2, 3, seed=2)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(opt.state.values(), opt2.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_sgd_state_with_none_values(tmp_path):
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_steps(model, opt, 1, seed=0)
    save_checkpoint(tmp_path, 1, model.state_dict(), {}, optimizer_state=opt.state_dict())
    opt2 = torch.optim.SGD(make_model().parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(load_checkpoint(tmp_path).optimizer_state)
    assert torch.equal(opt2.state_dict()["state"][0]["momentum_buffer"], opt.state_dict()["state"][0]["momentum_buffer"])


def test_rng_state_round_trip_via_extra(tmp_path):
    torch.manual_seed(123)
    torch.rand(3)
    rng = torch.get_rng_state()
    expected = torch.rand(4)
    save(tmp_path, 1, extra={"torch_rng": rng, "ema.weight": torch.ones(2, 2)})
    torch.manual_seed(999)
    extra = load_checkpoint(tmp_path).extra
    assert extra["torch_rng"].dtype == torch.uint8
    torch.set_rng_state(extra["torch_rng"])
    assert torch.equal(torch.rand(4), expected)
    assert torch.equal(extra["ema.weight"], torch.ones(2, 2))


def test_keep_last_and_latest(tmp_path):
    ckpt_dir = tmp_path / "checkpoints"
    assert find_latest(tmp_path) is None
    assert find_latest(tmp_path / "missing") is None
    for step in (10, 20, 30, 40):
        folder = save(tmp_path, step, keep_last=2)
        assert (ckpt_dir / "latest").read_text().strip() == folder.name
        assert find_latest(tmp_path) == folder
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["latest", "step-00000030", "step-00000040"]
    save(tmp_path, 50, keep_last=None)
    save(tmp_path, 60, keep_last=1)
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["latest", "step-00000060"]
    # Rewinding: saving a lower step points latest at it and leaves higher steps alone.
    save(tmp_path, 5, keep_last=1)
    assert find_latest(tmp_path).name == "step-00000005"
    assert (ckpt_dir / "step-00000060").is_dir()


def test_overwrite_same_step_replaces_it(tmp_path):
    save(tmp_path, 4, model=make_model(seed=1))
    model = make_model(seed=2)
    save(tmp_path, 4, model=model)
    loaded = load_checkpoint(tmp_path)
    assert all(torch.equal(loaded.model_state[k], v) for k, v in model.state_dict().items())
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-00000004"]


def test_resolve_from_run_checkpoints_and_step_folders(tmp_path):
    folder = save(tmp_path, 2)
    save(tmp_path, 1, keep_last=None)  # latest now names the older step
    latest = tmp_path / "checkpoints" / "step-00000001"
    assert resolve_checkpoint(tmp_path) == latest
    assert resolve_checkpoint(tmp_path / "checkpoints") == latest
    assert resolve_checkpoint(folder) == folder
    assert resolve_checkpoint(folder / "model.safetensors") == folder
    assert load_checkpoint(str(folder)).step == 2
    # Without `latest` (a save killed just before writing it) the newest step folder is used.
    (tmp_path / "checkpoints" / "latest").unlink()
    assert resolve_checkpoint(tmp_path) == folder


def test_crash_during_rename_keeps_previous_checkpoint(tmp_path, monkeypatch):
    first = save(tmp_path, 1)
    real_replace = os.replace

    def crashing_replace(src, dst):
        if ".tmp-" in os.fspath(src) and os.path.isdir(src):
            raise OSError("simulated crash")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crashing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        save(tmp_path, 2)
    with pytest.raises(OSError, match="simulated crash"):
        save(tmp_path, 1, model=make_model(seed=3))  # overwriting: the old folder must come back
    monkeypatch.setattr(os, "replace", real_replace)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-00000001"]
    assert find_latest(tmp_path) == first
    loaded = load_checkpoint(tmp_path)
    assert all(torch.equal(loaded.model_state[k], v) for k, v in make_model().state_dict().items())
    # A hard kill leaves the temporary folder behind: it is never taken for a checkpoint.
    leftover = tmp_path / "checkpoints" / ".step-00000009.tmp-12345"
    shutil.copytree(first, leftover)
    (tmp_path / "checkpoints" / "latest").unlink()
    assert find_latest(tmp_path) == first and resolve_checkpoint(tmp_path) == first


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="holds no wmkit checkpoint"):
        load_checkpoint(tmp_path)


def test_pickle_checkpoint_is_refused(tmp_path):
    torch.save(make_model().state_dict(), tmp_path / "model.pt")
    for path in (tmp_path, tmp_path / "model.pt"):
        with pytest.raises(CheckpointError, match="never unpickles") as info:
            load_checkpoint(path)
        assert "weights_only=True" in str(info.value) and "save_file" in str(info.value)


def test_truncated_safetensors_names_the_file(tmp_path):
    folder = save(tmp_path, 1)
    model_file = folder / "model.safetensors"
    model_file.write_bytes(model_file.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable safetensors file"):
        load_checkpoint(tmp_path)
    model_file.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        load_checkpoint(tmp_path)


def test_bad_trainer_json(tmp_path):
    folder = save(tmp_path, 1)
    trainer = folder / "trainer.json"
    trainer.write_text("{not json")
    with pytest.raises(CheckpointError, match="trainer.json is not valid JSON"):
        load_checkpoint(folder)
    trainer.write_text(json.dumps({"format": "something-else", "format_version": 1}))
    with pytest.raises(CheckpointError, match="expected 'wmkit-checkpoint'"):
        load_checkpoint(folder)
    trainer.write_text(json.dumps({"format": "wmkit-checkpoint", "format_version": 2}))
    with pytest.raises(CheckpointError, match="format_version 2; this wmkit reads up to 1. Upgrade"):
        load_checkpoint(folder)
    trainer.unlink()
    with pytest.raises(CheckpointError, match="no trainer.json"):
        load_checkpoint(folder)


def test_latest_pointing_to_missing_folder(tmp_path):
    save(tmp_path, 1)
    (tmp_path / "checkpoints" / "latest").write_text("step-00000099\n")
    with pytest.raises(CheckpointError, match="names 'step-00000099'.*step-00000001"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no such step folder"):
        find_latest(tmp_path)


def test_bad_arguments_leave_no_folder(tmp_path):
    import numpy as np

    with pytest.raises(CheckpointError, match="cannot be written as JSON"):
        save_checkpoint(tmp_path, 1, {}, {"rng": np.zeros(3)})
    with pytest.raises(CheckpointError, match="wmkit writes them"):
        save_checkpoint(tmp_path, 1, {}, {"format": "x"})
    with pytest.raises(CheckpointError, match="expected a str name"):
        save_checkpoint(tmp_path, 1, {"w": [1.0]}, {})
    with pytest.raises(CheckpointError, match="non-negative"):
        save_checkpoint(tmp_path, -1, {}, {})
    assert not (tmp_path / "checkpoints").exists()


def test_module_never_unpickles():
    tree = ast.parse(Path(ckpt.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            assert not any("pickle" in n for n in names)
        if isinstance(node, ast.Attribute):
            assert node.attr not in ("load", "loads") or getattr(node.value, "id", None) not in ("torch", "pickle")
