"""Checks of a training configuration before anything runs: every bad value gets a :class:`WmkitError`
that says what was received, what is expected and how to fix it (``wmkit train`` reports it and exits 2)."""

from __future__ import annotations

from .config import TrainConfig
from .errors import WmkitError
from .latent_cache import check_cache_config
from .occlusion import parse_colour
from .prediction_errors import PREDICTION_ERRORS


def check_train_config(cfg: TrainConfig) -> None:
    choices = {"objective": ("jepa", "pixel"), "regularizer": ("sigreg", "vicreg", "ema"), "amp": ("auto", "off"),
               "recon_focus_from": ("window", "median")}
    for name, allowed in choices.items():
        if getattr(cfg, name) not in allowed:
            raise WmkitError(f"train config '{name}' = {getattr(cfg, name)!r}; expected one of {allowed}")
    if cfg.window < 2:
        raise WmkitError(f"train config 'window' = {cfg.window}: a window needs at least 2 frames to predict one")
    if cfg.max_steps < 1 or cfg.batch_size < 1:
        raise WmkitError("train config 'max_steps' and 'batch_size' must be >= 1")
    if cfg.sigreg_samples < 2:
        raise WmkitError(f"train config 'sigreg_samples' = {cfg.sigreg_samples}: SIGReg needs at least 2 latent vectors")
    if cfg.cache_latents:
        check_cache_config(cfg)
    if cfg.recon_frames < 1:
        raise WmkitError(f"train config 'recon_frames' = {cfg.recon_frames}: the reconstruction decodes at least 1 frame per window")
    if cfg.recon_focus < 0:
        raise WmkitError(f"train config 'recon_focus' = {cfg.recon_focus}: the extra weight of moving pixels must be >= 0")
    for name in ("pred_weight", "pred_decoded_weight", "presence_change_weight", "presence_weight", "jump_weight", "occlude_weight",
                 "occlude_vanish"):
        if getattr(cfg, name) < 0:
            raise WmkitError(f"train config '{name}' = {getattr(cfg, name)}: a loss weight must be >= 0")
    for name in ("presence_weight", "jump_weight", "occlude_weight"):
        if getattr(cfg, name) > 0 and cfg.freeze_encoder:
            raise WmkitError(f"train config '{name}' = {getattr(cfg, name)} prices the keypoints an encoder learns, but "
                             f"freeze_encoder=true keeps the encoder fixed; set it in the first (autoencoder) stage instead")
    parse_colour(cfg.occlude_colour)
    if cfg.occlude_vanish > 0 and cfg.occlude_weight == 0:
        raise WmkitError(f"train config 'occlude_vanish' = {cfg.occlude_vanish} is part of the occlusion term, but "
                         f"occlude_weight=0 turns that term off; set occlude_weight > 0 (e.g. 10) or occlude_vanish=0")
    if cfg.occlude_radius <= 0:
        raise WmkitError(f"train config 'occlude_radius' = {cfg.occlude_radius}: an object's radius must be > 0")
    if cfg.jump_size < 0:
        raise WmkitError(f"train config 'jump_size' = {cfg.jump_size}: a change of velocity must be >= 0")
    if cfg.prediction_error not in PREDICTION_ERRORS:
        raise WmkitError(f"train config 'prediction_error' = {cfg.prediction_error!r}: expected one of "
                         f"{', '.join(repr(e) for e in PREDICTION_ERRORS)}")
    if cfg.state_warmup < 0:
        raise WmkitError(f"train config 'state_warmup' = {cfg.state_warmup}: a number of steps must be >= 0")
    if cfg.state_weight < 0:
        raise WmkitError(f"train config 'state_weight' = {cfg.state_weight}: a loss weight must be >= 0")
    if cfg.state_scale not in ("state", "change"):
        raise WmkitError(f"train config 'state_scale' = {cfg.state_scale!r}: expected 'state' or 'change'")
    if cfg.state_vars and cfg.state_weight == 0:
        raise WmkitError(f"train config 'state_vars' = {cfg.state_vars!r} names what the readout of state_weight learns, "
                         f"but state_weight is 0: set state_weight > 0 too, or drop state_vars")
    if cfg.pred_decoded_weight > 0 and (not cfg.freeze_encoder or cfg.recon_weight > 0 or cfg.objective != "jepa"):
        raise WmkitError(f"pred_decoded_weight={cfg.pred_decoded_weight} draws predictions with a trained, fixed pixel decoder: "
                         f"it needs freeze_encoder=true, init_from=RUN (a run trained with recon_weight > 0), recon_weight=0 "
                         f"and objective=jepa (got freeze_encoder={cfg.freeze_encoder}, recon_weight={cfg.recon_weight}, "
                         f"objective={cfg.objective!r})")
    if cfg.rollout_context < 1:
        raise WmkitError(f"train config 'rollout_context' = {cfg.rollout_context}: the rollout starts from at least 1 latent")
    if cfg.rollout_weight > 0 and cfg.rollout_steps >= 2 and cfg.rollout_context + 2 > cfg.window:
        raise WmkitError(f"train config 'rollout_context' = {cfg.rollout_context} leaves fewer than the 2 open-loop steps the "
                         f"rollout loss needs in windows of {cfg.window} frames; raise window to at least "
                         f"{cfg.rollout_context + 2} or lower rollout_context")
    if cfg.rollout_context_min != 0 and not 1 <= cfg.rollout_context_min <= cfg.rollout_context:
        raise WmkitError(f"train config 'rollout_context_min' = {cfg.rollout_context_min}: it is the shortest context a rollout "
                         f"is drawn with, between 1 and rollout_context = {cfg.rollout_context} (or 0 to always use rollout_context)")
    if cfg.temporal_weight > 0 and cfg.temporal_scale <= 0:
        raise WmkitError(f"train config 'temporal_scale' = {cfg.temporal_scale}: the target spread must be > 0")
    if cfg.appearance_channels < 0 or cfg.appearance_weight < 0:
        raise WmkitError(f"train config 'appearance_channels' = {cfg.appearance_channels}, 'appearance_weight' = "
                         f"{cfg.appearance_weight}: both must be >= 0")
