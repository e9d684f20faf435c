"""Atomic writes, weights_only-loadable state, RNG round trip, non-finite protection."""

import errno
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from vidattn.engine.checkpoint import (
    atomic_write,
    atomic_write_text,
    capture_rng_state,
    export_weights,
    load_training_state,
    restore_rng_state,
    save_training_state,
)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = atomic_write_text(tmp_path / "f.txt", "good")

    def broken(p):
        p.write_text("half")
        raise RuntimeError("killed")

    from vidattn.engine.checkpoint import atomic_write

    with pytest.raises(RuntimeError):
        atomic_write(path, broken)
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temp file left behind


def test_rng_round_trip():
    state = capture_rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_training_state_loads_with_weights_only(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    path = tmp_path / "checkpoint.pt"
    assert save_training_state(
        path,
        model=model,
        optimizer=opt,
        epoch=3,
        step=30,
        best={"metric": "val_top1", "value": 50.0, "epoch": 2},
        config={"a": [1, 2]},
    )
    raw = torch.load(path, weights_only=True)  # must not need any pickled class
    assert raw["epoch"] == 3
    state = load_training_state(path)
    assert state["config"] == {"a": [1, 2]} and state["best"]["value"] == 50.0
    fresh = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    fresh.load_state_dict(state["model"])
    assert torch.equal(fresh[0].weight, model[0].weight)


def test_non_finite_model_never_overwrites(tmp_path):
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "checkpoint.pt"
    save_training_state(path, model=model, optimizer=opt, epoch=1, step=1)
    weights = export_weights(model, tmp_path / "w.safetensors")
    before = (path.read_bytes(), weights.read_bytes())
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    assert not save_training_state(path, model=model, optimizer=opt, epoch=2, step=2)
    assert export_weights(model, tmp_path / "w.safetensors") is None
    assert (path.read_bytes(), weights.read_bytes()) == before


def test_load_rejects_foreign_and_torn_files(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a vidattn training checkpoint"):
        load_training_state(tmp_path / "foreign.pt")
    (tmp_path / "torn.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ValueError, match="torn.pt"):
        load_training_state(tmp_path / "torn.pt")
    with pytest.raises(FileNotFoundError):
        load_training_state(tmp_path / "none.pt")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_full_disk_says_so_and_where(tmp_path):
    from vidattn.engine.checkpoint import DiskFullError, _torch_save

    # torch.save into a full device: ENOSPC, not torch's "unexpected pos" RuntimeError
    with pytest.raises(OSError) as err:
        _torch_save({"w": torch.zeros(100_000)}, Path("/dev/full"))
    assert err.value.errno == errno.ENOSPC

    def full(p):
        p.write_bytes(b"partial")
        _torch_save({"w": torch.zeros(100_000)}, Path("/dev/full"))

    (tmp_path / "checkpoint.pt").write_bytes(b"old")
    with pytest.raises(DiskFullError, match=r"checkpoint.pt: disk full writing checkpoint.pt \(.* MiB free in "):
        atomic_write(tmp_path / "checkpoint.pt", full)
    assert (tmp_path / "checkpoint.pt").read_bytes() == b"old" and len(list(tmp_path.iterdir())) == 1
    from vidattn.cli import error_line

    try:
        atomic_write(tmp_path / "checkpoint.pt", full)
    except DiskFullError as e:
        assert error_line(e).startswith(f"{tmp_path / 'checkpoint.pt'}: disk full")


def test_run_files_get_the_mode_open_would_give(tmp_path):
    import stat

    from vidattn.models.compat import save_weights

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        save_weights(nn.Linear(2, 2), tmp_path / "w.safetensors")
        os.umask(0o027)
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o640


def test_find_weights_passes_over_a_corrupt_best_with_a_warning(tmp_path, caplog):
    import logging

    from vidattn import create_model
    from vidattn.engine.checkpoint import find_weights
    from vidattn.models.compat import CheckpointError

    model = create_model("c3d", num_classes=3, num_segments=4, channels=4, pool_output=[1, 2, 2], hidden=[8])
    export_weights(model, tmp_path / "model_best.safetensors")
    export_weights(model, tmp_path / "model_last.safetensors")
    assert find_weights(tmp_path) == tmp_path / "model_best.safetensors"
    data = (tmp_path / "model_best.safetensors").read_bytes()
    (tmp_path / "model_best.safetensors").write_bytes(data[: len(data) // 2])  # torn
    with caplog.at_level(logging.WARNING, logger="vidattn.engine.checkpoint"):
        assert find_weights(tmp_path) == tmp_path / "model_last.safetensors"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "model_best.safetensors: corrupt or truncated" in lines[0]
    assert "using model_last.safetensors instead" in lines[0] and "\n" not in lines[0]
    (tmp_path / "model_last.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"no readable weights: .*model_best.*; .*model_last"):
        find_weights(tmp_path)
