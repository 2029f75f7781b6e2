"""``wmkit train``: the whole training loop, top to bottom.

    setup      distributed context, data (train/val windows), model, optimiser, schedule
    resume     weights, optimiser, schedule, RNG and the exact position in the data order
    loop       batch -> loss terms -> one weighted total -> backward -> clip -> step
               log every ``log_every``; validate + collapse monitor every ``val_every``;
               checkpoint every ``ckpt_every``, at the end, and on SIGTERM
The same function runs on one CPU process or under ``torchrun`` on many (DDP); only rank 0 logs
and saves.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import hashlib
import json
import math
import signal
import time
from pathlib import Path

import torch
from torch import nn

from . import __version__, dist
from .config import ModelConfig, TrainConfig
from .data.store import EpisodeStore, write_json_atomic
from .data.windows import WindowDataset, make_loader
from .errors import DatasetError, WmkitError
from .latent_cache import attach_store_latents
from .log import MetricsWriter, logger, progress
from .losses import WorldModelObjective, effective_rank, loss_weights, prediction_loss, predictor_learns
from .models import WorldModel, model_size
from .readout import fit_state_statistics, state_readout
from .train_checks import check_train_config
from .warm_start import init_weights, set_train_mode


class TrainingError(WmkitError):
    """Training cannot go on (a non-finite batch or loss, an incompatible resume)."""


# ----- setup helpers --------------------------------------------------------------------------
def dataset_fingerprint(store: EpisodeStore) -> str:
    """A short hash of what decides the data: metadata, chunk names and sizes."""
    h = hashlib.sha256(json.dumps(store.meta, sort_keys=True).encode())
    for path in store.chunk_paths:
        h.update(f"{path.name}:{path.stat().st_size}".encode())
    return h.hexdigest()[:16]


def resolve_model_config(cfg: ModelConfig, tcfg: TrainConfig, store: EpisodeStore) -> ModelConfig:
    """Fill the data-dependent fields of the model config and check the model fits the data."""
    keys = tuple(cfg.obs_keys)
    missing = [k for k in keys if k not in store.obs_keys]
    if missing:
        raise DatasetError(f"the model reads observation keys {list(keys)} but {store.path} has {store.obs_keys}; "
                           f"set model.obs_keys to a subset of them (e.g. obs_keys=rgb)")
    rgb = store.frame_shape("obs/rgb")
    if rgb[0] != rgb[1]:
        raise DatasetError(f"{store.path} has non-square frames {rgb}; wmkit models take square frames (re-import with --size)")
    action_dim = int(store.meta.get("action_dim", 0)) * tcfg.frame_skip
    proprio_dim = store.frame_shape("obs/proprio")[0] if "proprio" in keys else 0
    if cfg.predictor in ("transformer", "gru", "convgru") and cfg.history < tcfg.window - 1:
        raise WmkitError(f"model.history={cfg.history} is shorter than the window's {tcfg.window - 1} prediction "
                         f"steps (the {cfg.predictor} predictor reads a window from its start); raise history or lower train.window")
    if tcfg.inverse_weight > 0 and cfg.inverse_frames > tcfg.window:
        raise WmkitError(f"model.inverse_frames={cfg.inverse_frames} latents do not fit in train.window={tcfg.window} frames; "
                         f"raise window or lower inverse_frames")
    names, angles = state_readout(tcfg, store)
    return dataclasses.replace(cfg, obs_keys=keys, image_size=int(rgb[0]), action_dim=action_dim, proprio_dim=proprio_dim,
                               decoder=tcfg.objective == "pixel" or tcfg.recon_weight > 0 or tcfg.pred_decoded_weight > 0,
                               inverse_head=tcfg.inverse_weight > 0, state_names=names, state_angles=angles)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to the peak, then cosine decay to 10% of it at ``max_steps``."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    progress_ = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:  # frozen parts (freeze_encoder) are not optimised
            (decay if p.ndim >= 2 and "pos" not in name else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


def to_device(batch: dict, device: torch.device, step: int) -> dict:
    out = {}
    for key, value in batch.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise TrainingError(f"step {step}: the batch's '{key}' holds NaN or inf values; clean the dataset (wmkit data info shows it)")
        out[key] = value.to(device, non_blocking=True)
    return out


@torch.no_grad()
def validate(model: WorldModel, loader, cfg: TrainConfig, device) -> dict:
    """Held-out prediction error against the copy-last baseline, and collapse statistics."""
    model.eval()
    pred_err = copy_err = 0.0
    latents = []
    for i, batch in enumerate(loader):
        if i >= cfg.val_batches:
            break
        batch = to_device(batch, device, -1)
        z = batch["latents"] if "latents" in batch else model.encode({k: batch[k] for k in model.cfg.obs_keys})
        pred = model.predict(z[:, :-1], batch["actions"][:, :-1])
        pred_err += prediction_loss(pred, z[:, 1:]).item()
        copy_err += prediction_loss(z[:, :-1], z[:, 1:]).item()
        latents.append(z.reshape(-1, z.shape[-1]).float().cpu())
    set_train_mode(model, cfg)
    n = max(1, min(cfg.val_batches, i + 1))
    z = torch.cat(latents)
    std = z.std(0)
    values = {"val_pred": pred_err / n, "val_copy": copy_err / n, "std_min": std.min().item(),
              "std_mean": std.mean().item(), "erank": effective_rank(z)}
    values = dist.mean_over_ranks(values, device)
    values["val_ratio"] = values["val_pred"] / max(values["val_copy"], 1e-12)
    return values


def collapsed(stats: dict) -> bool:
    """The representation has (nearly) collapsed: almost no spread, or all of it along one line.
    A low effective rank alone is no alarm: a world with few degrees of freedom (two-room: 4)
    legitimately occupies few directions of D."""
    return stats["std_mean"] < 0.05 or stats["erank"] < 1.5


# ----- the loop -------------------------------------------------------------------------------
def train(tcfg: TrainConfig, mcfg: ModelConfig, data: str, out: str, resume: bool = False,
          show_progress: bool | None = None) -> dict:
    """Train a world model on the dataset ``data`` into the run folder ``out``; returns a summary."""
    from .checkpoint import find_latest, load_checkpoint, save_checkpoint

    # -- setup: processes, data, model ----------------------------------------------------------
    check_train_config(tcfg)
    ctx = dist.init_distributed(tcfg.device)
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    out = Path(out)
    if ctx.is_main and not resume and out.exists() and any(out.iterdir()):
        raise WmkitError(f"run folder {out} already exists and is not empty; pass --resume to continue it, or choose another --out")
    if tcfg.batch_size % ctx.world_size:
        raise WmkitError(f"batch_size {tcfg.batch_size} must divide evenly over {ctx.world_size} processes")
    store = EpisodeStore(data)
    mcfg = resolve_model_config(mcfg, tcfg, store)
    if tcfg.appearance_channels >= mcfg.embed_dim:
        raise WmkitError(f"train config 'appearance_channels' = {tcfg.appearance_channels} leaves no channel of the "
                         f"model.embed_dim = {mcfg.embed_dim} for motion; choose fewer than {mcfg.embed_dim} (0 turns it off)")
    for name, off in (("presence_change_weight", 1.0), ("presence_weight", 0.0), ("jump_weight", 0.0),
                      ("occlude_weight", 0.0)):
        if getattr(tcfg, name) != off and mcfg.encoder != "objects":
            raise WmkitError(f"train config '{name}' = {getattr(tcfg, name)} weighs keypoints of an object latent, but "
                             f"model.encoder={mcfg.encoder!r}; drop it or use model.encoder=objects")
    if mcfg.object_futures > 1 and not (tcfg.rollout_weight > 0 and tcfg.rollout_steps >= 2):
        raise WmkitError(f"model.object_futures={mcfg.object_futures} imagines futures that only the rollout loss trains, but "
                         f"rollout_weight={tcfg.rollout_weight} and rollout_steps={tcfg.rollout_steps}; set rollout_weight > 0 "
                         f"and rollout_steps >= 2, or model.object_futures=1")
    if mcfg.encoder == "objects" and (tcfg.temporal_weight > 0 or tcfg.appearance_channels):
        raise WmkitError("temporal_weight and appearance_channels treat the latent as cells of model.embed_dim channels; an "
                         "object latent (model.encoder=objects) is keypoint tokens: set temporal_weight=0 appearance_channels=0")
    keys = tuple(mcfg.obs_keys)
    train_set = WindowDataset(store, tcfg.window, tcfg.frame_skip, "train", tcfg.val_fraction, keys)
    val_set = WindowDataset(store, tcfg.window, tcfg.frame_skip, "val", tcfg.val_fraction, keys)
    per_rank = tcfg.batch_size // ctx.world_size
    # reference frames for the projector's evaluation statistics (WorldModel.calibrate): fixed
    # training windows, the same in every run with this seed, so a resumed run validates alike
    calib_loader = make_loader(train_set, per_rank, tcfg.seed + 2, ctx.rank, ctx.world_size, 0)
    calib_obs = [{k: b[k].to(ctx.device) for k in keys} for b, _ in zip(calib_loader, range(max(1, tcfg.val_batches)))]
    del calib_loader
    torch.manual_seed(tcfg.seed)
    model = WorldModel(mcfg)
    if model.state_head is not None:  # the readout's statistics over the training episodes (init_from / resume may replace them)
        fit_state_statistics(model.state_head, store, train_set)
    init_weights(model, tcfg)
    model = model.to(ctx.device)
    if tcfg.channels_last and mcfg.encoder == "cnn":
        model = model.to(memory_format=torch.channels_last)
        model.encoder.channels_last = True
    if tcfg.cache_latents:  # every frame encoded once; the loaders then cut windows of latents
        attach_store_latents(model, store, (train_set, val_set), show_progress if ctx.is_main else False)
        set_train_mode(model, tcfg)
    # stored latents are served from this process's memory: loader workers would each need a copy
    loader = make_loader(train_set, per_rank, tcfg.seed, ctx.rank, ctx.world_size, 0 if tcfg.cache_latents else tcfg.num_workers)
    val_loader = make_loader(val_set, min(per_rank, len(val_set) // ctx.world_size), tcfg.seed + 1, ctx.rank,
                             ctx.world_size, 0, shuffle=False)
    target_encoder = None
    if tcfg.regularizer == "ema":  # V-JEPA-style target: an EMA copy whose encoder gives the targets, no gradient
        target_encoder = copy.deepcopy(model).requires_grad_(False)
    if not predictor_learns(tcfg):  # an autoencoder stage: its predictor is not run, so it is not optimised
        model.predictor.requires_grad_(False)
    optimizer = make_optimizer(model, tcfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, tcfg))
    fingerprint = dataset_fingerprint(store)

    # -- resume -----------------------------------------------------------------------------------
    step, epoch, batch_in_epoch = 0, 0, 0
    if resume:
        latest = find_latest(out)
        if latest is None:
            raise WmkitError(f"--resume: {out} holds no checkpoint to resume from; drop --resume to start a new run")
        ckpt = load_checkpoint(latest)
        meta = ckpt.meta
        if meta["dataset"]["fingerprint"] != fingerprint:
            raise TrainingError(f"--resume: {latest} was trained on other data (fingerprint {meta['dataset']['fingerprint']}, "
                                f"this dataset {fingerprint}); resume with the original --data")
        saved_model = meta["model_config"]
        if saved_model != json.loads(json.dumps(dataclasses.asdict(mcfg))):
            raise TrainingError(f"--resume: the model config differs from the checkpoint's ({saved_model}); use the original settings")
        model.load_state_dict(ckpt.model_state)
        optimizer.load_state_dict(ckpt.optimizer_state)
        scheduler.load_state_dict(meta["scheduler"])
        torch.set_rng_state(ckpt.extra["rng.torch"])
        if target_encoder is not None:
            target_encoder.load_state_dict({k[4:]: v for k, v in ckpt.extra.items() if k.startswith("ema.")})
        step, epoch, batch_in_epoch = meta["step"], meta["epoch"], meta["batch_in_epoch"]
        if ctx.is_main:
            logger.info(f"resuming {out} from step {step} ({latest.name})")

    objective = WorldModelObjective(model, tcfg, target_encoder)
    if ctx.distributed:
        objective = nn.parallel.DistributedDataParallel(objective, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
    if tcfg.compile:
        objective = torch.compile(objective)
    autocast_on = tcfg.amp == "auto" and ctx.device.type == "cuda"
    weights = loss_weights(tcfg)
    # only a prediction loss that reaches the encoder pulls its latent toward a constant (an autoencoder stage's
    # or a frozen encoder's latent is not collapsing, however little of it varies: mostly absent keypoints)
    pulled = not tcfg.freeze_encoder and predictor_learns(tcfg)

    def save(reason: str) -> None:
        if not ctx.is_main:
            return
        extra = {"rng.torch": torch.get_rng_state()}
        if target_encoder is not None:
            extra.update({f"ema.{k}": v for k, v in target_encoder.state_dict().items()})
        meta = {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "reason": reason,
                "train_config": dataclasses.asdict(tcfg), "model_config": dataclasses.asdict(mcfg),
                "dataset": {"path": str(store.path), "fingerprint": fingerprint, "env": store.meta.get("env"),
                            "world_params": store.meta.get("world_params"),
                            "state_names": store.meta.get("state_names")},
                "scheduler": scheduler.state_dict(), "wmkit_version": __version__}
        save_checkpoint(out, step, model.state_dict(), meta, optimizer.state_dict(), extra, keep_last=tcfg.keep_last)

    stop = {"requested": False}
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    metrics = tboard = None
    if ctx.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out / "config.json", {"train": dataclasses.asdict(tcfg), "model": dataclasses.asdict(mcfg),
                                                "data": str(store.path), "world_size": ctx.world_size})
        metrics = MetricsWriter(out / "metrics.jsonl")
        if tcfg.tensorboard:
            from .errors import require

            require("tensorboard", "tensorboard", "TensorBoard logging")
            from torch.utils.tensorboard import SummaryWriter

            tboard = SummaryWriter(str(out / "tensorboard"))
        logger.info(f"model: {model_size(model) / 1e6:.2f}M parameters ({mcfg.encoder} encoder, {mcfg.predictor} predictor); "
                    f"{len(train_set)} train / {len(val_set)} val windows; {ctx.world_size} process(es) on {ctx.device}")

    # -- the loop -------------------------------------------------------------------------------
    loader.sampler.set_epoch(epoch, skip=batch_in_epoch * per_rank)
    batches = iter(loader)
    generator = torch.Generator()
    bar = progress(tcfg.max_steps, "train", "step", None if show_progress is None else not show_progress) if ctx.is_main else None
    if bar is not None:
        bar.update(step)
    frames_per_step = tcfg.batch_size * tcfg.window
    last = {"time": time.perf_counter(), "step": step}
    val_stats: dict = {}
    logged: dict = {}
    try:
        while step < tcfg.max_steps:
            if dist.broadcast_flag(stop["requested"], ctx.device):
                logger.warning(f"SIGTERM received: saving a checkpoint at step {step} and stopping")
                if not tcfg.freeze_encoder:
                    model.calibrate(calib_obs)
                save("sigterm")
                return {"run": str(out), "step": step, "stopped": "sigterm", **logged, **val_stats}
            try:
                batch = next(batches)
            except StopIteration:  # epoch boundary: a new permutation, same for every rank
                epoch, batch_in_epoch = epoch + 1, 0
                loader.sampler.set_epoch(epoch)
                batches = iter(loader)
                batch = next(batches)
            batch_in_epoch += 1
            batch = to_device(batch, ctx.device, step)

            generator.manual_seed(tcfg.seed * 1_000_003 + step)  # SIGReg directions: same on every rank
            with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=autocast_on):
                terms, z = objective(batch, generator)
            if "state" in terms:  # the predictions learn from the readout once it reads: its weight grows over state_warmup
                weights["state"] = tcfg.state_weight * min(1.0, step / max(1, tcfg.state_warmup))
            loss = sum(weights[k] * v for k, v in terms.items())
            for name, value in terms.items():
                if not torch.isfinite(value):
                    raise TrainingError(f"step {step}: loss term '{name}' is {value.item()}; lower the learning rate "
                                        f"(lr={tcfg.lr}) or check the data. The last checkpoint is in {out}/checkpoints")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip if tcfg.grad_clip > 0 else float("inf"))
            optimizer.step()
            scheduler.step()
            if target_encoder is not None:
                with torch.no_grad():
                    for (_, t), (_, s) in zip(_encoder_params(target_encoder), _encoder_params(model)):
                        t.lerp_(s, 1.0 - tcfg.ema_decay)
            step += 1

            if step % tcfg.log_every == 0 or step == tcfg.max_steps:
                now = time.perf_counter()
                rate = (step - last["step"]) / max(now - last["time"], 1e-9)
                last.update(time=now, step=step)
                values = {k: v.item() for k, v in terms.items()}
                values.update(loss=loss.item(), grad_norm=float(grad_norm))
                logged = dist.mean_over_ranks(values, ctx.device)
                if ctx.is_main:
                    metrics.write(event="train", step=step, epoch=epoch, lr=scheduler.get_last_lr()[0], **logged,
                                  steps_per_s=round(rate, 3), frames_per_s=round(rate * frames_per_step, 1))
                    bar.set_postfix({k: f"{v:.4g}" for k, v in logged.items() if k != "grad_norm"}, refresh=False)
                    if tboard is not None:
                        for k, v in logged.items():
                            tboard.add_scalar(f"train/{k}", v, step)
            if bar is not None:
                bar.update(1)
            validating = (tcfg.val_every and step % tcfg.val_every == 0) or step == tcfg.max_steps
            if (validating or step % tcfg.ckpt_every == 0) and not tcfg.freeze_encoder:
                model.calibrate(calib_obs)  # evaluation statistics of the current weights
            if validating:
                val_stats = validate(model, val_loader, tcfg, ctx.device)
                if ctx.is_main:
                    metrics.write(event="val", step=step, **val_stats)
                    if collapsed(val_stats) and pulled:
                        logger.warning(f"!!! REPRESENTATION COLLAPSE at step {step}: mean per-dim std {val_stats['std_mean']:.3g}, "
                                       f"effective rank {val_stats['erank']:.1f} of {model.latent_dim}. Raise the regulariser weight "
                                       f"or lower the learning rate !!!")
                        metrics.write(event="collapse", step=step, **val_stats)
            if step % tcfg.ckpt_every == 0 or step == tcfg.max_steps:
                save("periodic" if step < tcfg.max_steps else "final")
        dist.barrier()  # every rank done before the group is torn down: gloo aborts a rank whose peer left early
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        if bar is not None:
            bar.close()
        if metrics is not None:
            metrics.close()
        if tboard is not None:
            tboard.close()
        if ctx.distributed:
            # the DDP wrapper holds the process group: free it while the interpreter is fully alive, so
            # gloo joins its threads here and not at exit (where a rank aborted in about 1 of 10 runs)
            objective = None
            gc.collect()
            dist.cleanup()
    return {"run": str(out), "step": step, **logged, **val_stats}


def _encoder_params(model: WorldModel):
    yield from model.encoder.named_parameters()
    yield from model.projector.named_parameters()
