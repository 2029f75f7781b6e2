"""Data parallelism on CPU (gloo): N processes must train the model one process trains on the same
global batch. SIGReg and the projector's BatchNorm use global-batch statistics to make that true."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from wmkit.losses import sigreg, vicreg_terms
from wmkit.models.norm import GlobalBatchNorm1d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, z_full, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    z = z_full.chunk(world)[rank].clone().requires_grad_()
    value = sigreg(z, 128, 17, torch.Generator().manual_seed(7))
    value.backward()
    var, cov = vicreg_terms(z.detach())
    bn = GlobalBatchNorm1d(z.shape[1])
    y = bn(z.detach()).detach()
    out[rank] = {"sigreg": value.item(), "grad": z.grad.clone(), "var": var.item(), "cov": cov.item(),
                 "bn": y, "running_var": bn.running_var.clone()}
    dist.destroy_process_group()


def test_statistics_split_over_two_ranks_equal_one_process():
    z = torch.randn(512, 16, generator=torch.Generator().manual_seed(0)) * 1.5 + 0.3
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, free_port(), z, out), nprocs=2, join=True)
    full = z.clone().requires_grad_()
    value = sigreg(full, 128, 17, torch.Generator().manual_seed(7))
    value.backward()
    var, cov = vicreg_terms(z)
    bn = GlobalBatchNorm1d(16)
    y = bn(z).detach()
    for rank in range(2):
        r = out[rank]
        assert r["sigreg"] == pytest.approx(value.item(), rel=1e-5)
        # each rank receives world_size x its share of the gradient; DDP's averaging divides it out
        torch.testing.assert_close(r["grad"] / 2, full.grad.chunk(2)[rank], rtol=1e-4, atol=1e-7)
        assert r["var"] == pytest.approx(var.item(), rel=1e-5, abs=1e-7)
        assert r["cov"] == pytest.approx(cov.item(), rel=1e-4)
        torch.testing.assert_close(r["bn"], y.chunk(2)[rank], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(r["running_var"], bn.running_var, rtol=1e-5, atol=1e-6)


def train_curve(run):
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return {x["step"]: x["loss"] for x in lines if x["event"] == "train"}


def test_two_process_ddp_matches_one_process(two_room_data, tmp_path):
    args = ["train", "--data", str(two_room_data), "--preset", "debug", "max_steps=20", "batch_size=8",
            "val_every=0", "ckpt_every=1000", "threads=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "wmkit", *args, "--out", str(tmp_path / "one")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "wmkit", *args, "--out", str(tmp_path / "two")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = train_curve(tmp_path / "one"), train_curve(tmp_path / "two")
    assert sorted(a) == sorted(b) == list(range(1, 21))
    worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
    assert worst < 1e-4, f"largest relative difference over 20 steps: {worst:.2e}"
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2


@pytest.mark.parametrize("env, message", [
    ({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "WMKIT_DIST_TIMEOUT_S": "3"}, "process group failed to start"),
    ({"RANK": "0", "WORLD_SIZE": "two"}, "malformed"),
])
def test_torchrun_environment_that_cannot_start_raises(env, message):
    env = {**os.environ, "MASTER_PORT": str(free_port()), **env}
    code = "from wmkit.dist import init_distributed; init_distributed('cpu')"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and message in result.stderr
