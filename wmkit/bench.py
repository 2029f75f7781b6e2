"""``wmkit bench``: throughput of the data path, each number beside a baseline run in the same
command (this machine is shared and noisy: ratios and medians travel better than raw numbers).

- ``collect-two-room``: batched, vectorised two-room collection into the store with 2 workers,
  against the same world stepped one copy at a time (batch 1) in one worker.
- ``collect-push-t``: push-t collection with 2 workers against 1 worker.
- ``read-windows``: training windows from the store through a DataLoader (2 workers, whole-batch
  reads), against per-window reads with the default collate in the same loader setup.
- ``train-small``: optimisation steps of the ``small`` preset (64x64 frames), channels-last
  convolutions against the same model in eager float32 with the default memory format.
- ``ddp-equality``: not a speed — the largest relative difference between the loss curves of 2 gloo
  processes and 1 process with the same global batch (20 steps), and SIGReg on one batch split over
  2 ranks against 1 process.
- ``rollout-recurrent`` / ``rollout-shared``: a training step of the balls recipes' conv-GRU, against
  a rollout that re-reads its window at every step / runs its context again.
- ``plan-cem``: one full CEM plan (300 samples x horizon 5 x 30 iterations, B=1) through the small
  model with the MLP predictor, against the same plan with the transformer predictor.
"""

from __future__ import annotations

import contextlib
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

from .config import CollectConfig
from .log import logger


def _collect_rate(out: Path, **cfg) -> float:
    from .envs.collect import collect

    if out.exists():
        shutil.rmtree(out)
    summary = collect(CollectConfig(**cfg), out, show_progress=False)
    return summary["frames_per_s"]


def _median(fn, repeats: int) -> float:
    return statistics.median(fn() for _ in range(repeats))


def bench_collect(tmp: Path, env: str, quick: bool, repeats: int) -> dict:
    episodes = 64 if quick else (1024 if env == "two-room" else 256)
    per_chunk = 32 if env == "two-room" else 16
    main = _median(lambda: _collect_rate(tmp / env, env=env, episodes=episodes, workers=2, episodes_per_chunk=per_chunk), repeats)
    if env == "two-room":
        name = "batch 1, 1 worker"
        base = _median(lambda: _collect_rate(tmp / env, env=env, episodes=max(8, episodes // 8), workers=1, episodes_per_chunk=1), repeats)
    else:
        name = "1 worker"
        base = _median(lambda: _collect_rate(tmp / env, env=env, episodes=episodes // 2, workers=1, episodes_per_chunk=per_chunk), repeats)
    return {"frames_per_s": round(main, 1), "baseline": name, "baseline_frames_per_s": round(base, 1),
            "ratio": round(main / base, 2), "episodes": episodes, "workers": 2, "size": 64}


class _PerWindow:
    """The dataset without its whole-batch read: the baseline of ``read-windows``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i]


def _loader_rate(dataset, batch_size: int, num_batches: int, batched: bool) -> float:
    from torch.utils.data import DataLoader

    from .data.windows import WindowSampler, make_loader, worker_context

    if batched:
        loader = make_loader(dataset, batch_size, num_workers=2)
    else:
        loader = DataLoader(_PerWindow(dataset), batch_size=batch_size, sampler=WindowSampler(len(dataset)),
                            num_workers=2, drop_last=True, persistent_workers=True, multiprocessing_context=worker_context())
    frames, start = 0, None
    for i, batch in enumerate(loader):
        if i == 2:  # workers are warm: start the clock
            start, frames = time.perf_counter(), 0
        frames += batch["rgb"].shape[0] * batch["rgb"].shape[1]
        if i == num_batches + 2:
            break
    return frames / (time.perf_counter() - start)


def bench_read(tmp: Path, quick: bool, repeats: int) -> dict:
    from .data.windows import WindowDataset

    data = tmp / "read-data"
    if not data.exists():
        _collect_rate(data, env="two-room", episodes=64 if quick else 512, workers=2)
    dataset = WindowDataset(data, length=16)
    num_batches = 10 if quick else 150
    main = _median(lambda: _loader_rate(dataset, 32, num_batches, True), repeats)
    base = _median(lambda: _loader_rate(dataset, 32, num_batches, False), repeats)
    return {"frames_per_s": round(main, 1), "baseline": "per-window reads + default collate",
            "baseline_frames_per_s": round(base, 1), "ratio": round(main / base, 2),
            "window": 16, "batch": 32, "loader_workers": 2, "compression": "lzf"}


def _median_time(call, calls: int, warmup: int = 1) -> float:
    """Median seconds of ``call(i)`` over ``calls`` timed calls, after ``warmup`` untimed ones (they
    allocate and warm up); ``i`` counts from 0 over all of them."""
    times = []
    for i in range(warmup + calls):
        start = time.perf_counter()
        call(i)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _train_step_time(channels_last: bool, steps: int, compile_model: bool = False, frozen: str = "") -> float:
    """Median seconds per optimisation step of the small preset on one synthetic batch (data
    loading excluded: the read benchmark covers it). ``frozen``: the encoder is frozen
    (``freeze_encoder``) and the batch holds its ``images`` or their stored ``latents`` (``cache_latents``)."""
    import torch

    from .config import ModelConfig, TrainConfig, build
    from .losses import WorldModelObjective, loss_weights
    from .models import WorldModel

    tcfg, mcfg = build(TrainConfig, "small", "train"), build(ModelConfig, "small", "model", action_dim=2)
    torch.manual_seed(0)
    model = WorldModel(mcfg)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        model.encoder.channels_last = True
    if frozen:
        for part in (model.encoder, model.projector):
            part.requires_grad_(False).eval()
    objective = WorldModelObjective(model, tcfg)
    if compile_model:
        objective = torch.compile(objective)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    weights = loss_weights(tcfg)
    g = torch.Generator().manual_seed(0)
    batch = {"rgb": torch.randint(0, 256, (tcfg.batch_size, tcfg.window, 3, 64, 64), dtype=torch.uint8, generator=g),
             "actions": torch.rand(tcfg.batch_size, tcfg.window, 2, generator=g) * 2 - 1}
    if frozen == "latents":
        with torch.no_grad():
            batch = {"latents": model.encode(batch["rgb"]), "actions": batch["actions"]}

    def step(i):
        terms, _ = objective(batch, g)
        loss = sum(weights[k] * v for k, v in terms.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return _median_time(step, steps, warmup=2)


def _step_rates(main: float, base: float, frames: int, baseline: str, **details) -> dict:
    """A training-step benchmark's result: frames and steps per second of the median step ``main``
    against the ``baseline`` step ``base`` (seconds) from the same run, and their ratio."""
    return {"frames_per_s": round(frames / main, 1), "steps_per_s": round(1 / main, 3), "baseline": baseline,
            "baseline_frames_per_s": round(frames / base, 1), "ratio": round(base / main, 2), **details}


def bench_train(tmp: Path, quick: bool, repeats: int) -> dict:
    from .config import TrainConfig, build

    tcfg = build(TrainConfig, "small", "train")
    frames = tcfg.batch_size * tcfg.window
    steps = 3 if quick else 20
    main = _median(lambda: _train_step_time(True, steps), repeats)
    base = _median(lambda: _train_step_time(False, steps), repeats)
    return _step_rates(main, base, frames, "eager float32, default memory format", batch=tcfg.batch_size,
                       window=tcfg.window, preset="small")


def bench_frozen(tmp: Path, quick: bool, repeats: int) -> dict:
    """A predictor on a frozen encoder: steps on stored latents (cache_latents) against steps that encode the images."""
    from .config import TrainConfig, build

    tcfg = build(TrainConfig, "small", "train")
    frames = tcfg.batch_size * tcfg.window
    steps = 3 if quick else 20
    main = _median(lambda: _train_step_time(True, steps, frozen="latents"), repeats)
    base = _median(lambda: _train_step_time(True, steps, frozen="images"), repeats)
    return _step_rates(main, base, frames, "frozen encoder run on every window", batch=tcfg.batch_size,
                       window=tcfg.window, preset="small")


def _convgru_step_time(window: int, cfg, steps: int, patch: tuple | None = None) -> float:
    """Median seconds of one training step (forward and backward of the prediction and rollout
    terms) of the balls recipes' conv-GRU predictor on stored latents: batch 16, windows of
    ``window``, 8x8 maps of 16 numbers, the rollout as ``cfg`` (a TrainConfig) sets it. ``patch``:
    ``mock.patch.object`` arguments in force while timing (a baseline's older code path)."""
    import torch

    from .config import ModelConfig
    from .losses import world_model_losses
    from .models import WorldModel

    torch.manual_seed(0)
    model = WorldModel(ModelConfig(action_dim=0, grid=8, embed_dim=16, predictor="convgru", predictor_width=64,
                                   predictor_depth=3, history=window))
    batch = {"latents": torch.randn(16, window, model.latent_dim), "actions": torch.zeros(16, window, 0)}

    def step(i):
        terms, _ = world_model_losses(model, batch, cfg, torch.Generator().manual_seed(i))
        (terms["pred"] + terms["rollout"]).backward()

    with contextlib.ExitStack() as stack:
        if patch is not None:
            stack.enter_context(mock.patch.object(*patch))
        return _median_time(step, steps)


def bench_rollout_recurrent(tmp: Path, quick: bool, repeats: int) -> dict:
    """Windows of 12, 4 rollout steps after 8; the baseline has no ``step()``: the rollout re-reads its window."""
    from .config import TrainConfig
    from .models.predictors import ConvGRUPredictor

    steps, cfg = 3 if quick else 15, TrainConfig(rollout_steps=4, rollout_context=8)
    main = _median(lambda: _convgru_step_time(12, cfg, steps), repeats)
    base = _median(lambda: _convgru_step_time(12, cfg, steps, (ConvGRUPredictor, "step", None)), repeats)
    return _step_rates(main, base, 16 * 12, "rollout re-reads the window each step", batch=16, window=12,
                       rollout="4 steps after 8")


def bench_rollout_shared(tmp: Path, quick: bool, repeats: int) -> dict:
    """The balls README recipe's predictor (windows of 22, 10 rollout steps after 4 to 12), with and without
    ``WorldModel.predict_and_rollout``'s shared pass."""
    from .config import TrainConfig
    from .models import WorldModel

    steps, cfg = 3 if quick else 15, TrainConfig(rollout_steps=10, rollout_context=12, rollout_context_min=4)
    main = _median(lambda: _convgru_step_time(22, cfg, steps), repeats)
    base = _median(lambda: _convgru_step_time(22, cfg, steps, (WorldModel, "predict_and_rollout", WorldModel._predict_then_rollout)), repeats)
    return _step_rates(main, base, 16 * 22, "the rollout runs its context again", batch=16, window=22,
                       rollout="10 steps after 4-12")


def _sigreg_step_time(direct: bool, steps: int) -> float:
    """Median seconds of SIGReg's forward and backward at a per-region model's size (4,096 cell
    vectors of 16 numbers, 256 directions, 17 knots); ``direct`` writes the characteristic-function
    sums as plain torch expressions, whose backward autograd derives (the baseline)."""
    import torch

    from . import losses

    g = torch.Generator().manual_seed(0)
    z = torch.randn(4096, 16, generator=g, requires_grad=True)

    def direct_sums(x, t):
        xt = x.unsqueeze(-1) * t
        return torch.stack([torch.cos(xt).sum(0), torch.sin(xt).sum(0)])

    with contextlib.ExitStack() as stack:
        if direct:
            stack.enter_context(mock.patch.object(losses._CharacteristicSums, "apply", direct_sums))
        return _median_time(lambda i: losses.sigreg(z, 256, 17, torch.Generator().manual_seed(i)).backward(), steps)


def bench_sigreg(tmp: Path, quick: bool, repeats: int) -> dict:
    steps = 3 if quick else 15
    main = _median(lambda: _sigreg_step_time(False, steps), repeats)
    base = _median(lambda: _sigreg_step_time(True, steps), repeats)
    samples = 4096
    return {"frames_per_s": round(samples / main, 1), "baseline": "sums written directly (autograd backward)",
            "baseline_frames_per_s": round(samples / base, 1), "ratio": round(base / main, 2),
            "unit": "cell vectors/s", "ms": round(1000 * main, 1), "baseline_ms": round(1000 * base, 1)}


def _plan_time(predictor: str, repeats: int, iterations: int) -> float:
    """Median seconds of one full CEM plan (B=1, 300 samples x horizon 5 x ``iterations``) through a
    small-preset world model with the given predictor."""
    import torch

    from .config import ModelConfig, build
    from .models import WorldModel
    from .planning.costs import CostConfig, model_cost
    from .planning.planners import cem

    torch.manual_seed(0)
    model = WorldModel(build(ModelConfig, "small", "model", action_dim=2, predictor=predictor)).eval()
    d = model.cfg.embed_dim
    context, goal = torch.randn(1, 1, d), torch.randn(1, d)
    cost = model_cost(model, context, torch.zeros(1, 0, 2), goal, CostConfig())
    with torch.no_grad():
        return _median_time(lambda i: cem(cost, 1, 5, 2, low=-1.0, high=1.0, num_samples=300, num_elites=30,
                                          iterations=iterations, generator=torch.Generator().manual_seed(i)), repeats)


def bench_plan(tmp: Path, quick: bool, repeats: int) -> dict:
    iterations = 5 if quick else 30
    n = 2 if quick else 5
    main = _plan_time("mlp", n, iterations)
    base = _plan_time("transformer", 1 if quick else 3, iterations)
    return {"seconds_per_plan": round(main, 4), "baseline": "same plan, transformer predictor",
            "baseline_seconds_per_plan": round(base, 4), "ratio": round(base / main, 2),
            "frames_per_s": round(300 * 5 * iterations / main, 1), "baseline_frames_per_s": round(300 * 5 * iterations / base, 1),
            "samples": 300, "horizon": 5, "iterations": iterations, "note": "frames_per_s = imagined latent steps per second"}


def _ddp_worker(rank, world, port, z, out):
    import os

    import torch
    import torch.distributed as tdist

    from .losses import sigreg

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    out[rank] = sigreg(z.chunk(world)[rank], 256, 17, torch.Generator().manual_seed(3)).item()
    tdist.destroy_process_group()


def bench_ddp(tmp: Path, quick: bool, repeats: int) -> dict:
    """Not a speed: how exactly 2 gloo processes reproduce 1 process with the same global batch."""
    import json
    import os
    import socket
    import subprocess
    import sys

    import torch
    import torch.multiprocessing as mp

    from .losses import sigreg

    data = tmp / "ddp-data"
    if not data.exists():
        _collect_rate(data, env="two-room", episodes=16, steps=30, workers=1)
    steps = 20
    args = ["train", "--data", str(data), "--preset", "debug", f"max_steps={steps}", "batch_size=8", "val_every=0",
            "ckpt_every=1000", "threads=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    curves = {}
    for name, launcher in (("one", [sys.executable, "-m", "wmkit"]),
                           ("two", [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "wmkit"])):
        subprocess.run([*launcher, *args, "--out", str(tmp / f"ddp-{name}")], env=env, check=True, capture_output=True)
        lines = [json.loads(x) for x in (tmp / f"ddp-{name}" / "metrics.jsonl").read_text().splitlines()]
        curves[name] = {x["step"]: x["loss"] for x in lines if x["event"] == "train"}
    worst = max(abs(curves["one"][s] - curves["two"][s]) / abs(curves["one"][s]) for s in curves["one"])
    z = torch.randn(1024, 64, generator=torch.Generator().manual_seed(0))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_ddp_worker, args=(2, port, z, out), nprocs=2, join=True)
    single = sigreg(z, 256, 17, torch.Generator().manual_seed(3)).item()
    return {"loss_max_rel_diff_20_steps": worst, "sigreg_one_process": single, "sigreg_two_ranks": out[0],
            "sigreg_abs_diff": abs(out[0] - single), "steps": steps, "global_batch": 8}


BENCHMARKS = {
    "collect-two-room": lambda tmp, quick, r: bench_collect(tmp, "two-room", quick, r),
    "collect-push-t": lambda tmp, quick, r: bench_collect(tmp, "push-t", quick, r),
    "read-windows": bench_read,
    "train-small": bench_train,
    "train-frozen-cached": bench_frozen,
    "plan-cem": bench_plan,
    "sigreg": bench_sigreg,
    "rollout-recurrent": bench_rollout_recurrent,
    "rollout-shared": bench_rollout_shared,
    "ddp-equality": bench_ddp,
}


def run_bench(quick: bool = False, only: str | None = None) -> dict:
    """Run the benchmarks (median of 3 repeats, 1 with ``quick``) and return their results."""
    from .errors import WmkitError

    names = list(BENCHMARKS) if not only else [n.strip() for n in only.split(",")]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise WmkitError(f"unknown benchmark(s) {unknown}; available: {', '.join(BENCHMARKS)}")
    repeats = 1 if quick else 3
    results = {}
    with tempfile.TemporaryDirectory(prefix="wmkit-bench-") as tmp:
        for name in names:
            logger.info(f"bench {name} ...")
            results[name] = BENCHMARKS[name](Path(tmp), quick, repeats)
    return {"quick": quick, "repeats": repeats, "results": results}


def format_table(report: dict) -> str:
    lines = [f"{'benchmark':<20} {'frames/s':>10}  {'baseline':<38} {'frames/s':>10} {'ratio':>6}"]
    for name, r in report["results"].items():
        if "baseline" in r:
            lines.append(f"{name:<20} {r['frames_per_s']:>10.0f}  {r['baseline']:<38} {r['baseline_frames_per_s']:>10.0f} {r['ratio']:>6.2f}")
        else:
            lines.append(f"{name:<20} " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
    return "\n".join(lines)
