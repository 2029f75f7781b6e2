"""Read-state dynamics kept beside a checkpoint: ``wmkit fit-dynamics`` fits the state model's network
(:mod:`wmkit.eval.state_model`) on what a model's readout head reads from its training frames, scores it
on the held-out episodes and saves it as safetensors and JSON (no pickle) in ``RUN/read-dynamics/step-N``;
``--dynamics read-state`` loads it as the model agent's dynamics."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..data.store import EpisodeStore
from ..fitted import beside_checkpoint, check_fitted_on, check_replaceable, load_fitted, model_fingerprint
from ..errors import WmkitError
from ..planning.state_cost import StateGoalDistance
from .state_model import StateDynamics, _wrap_angles, check_fit, fit_read_dynamics, read_step_pairs, training_data


WEIGHTS, META = "dynamics.safetensors", "dynamics.json"
FORMAT = "wmkit-read-dynamics"


def read_dynamics_folder(checkpoint_path) -> Path:
    """Where the read-state dynamics fitted on ``RUN/checkpoints/step-N`` live: ``RUN/read-dynamics/step-N``."""
    return beside_checkpoint(checkpoint_path, "read-dynamics", "read-state dynamics", "--out / --read-dynamics")


def held_out_error(dynamics: StateDynamics, before: np.ndarray, acts: np.ndarray, after: np.ndarray) -> dict:
    """Per variable, the dynamics' mean absolute error over one model step on ``(before, acts, after)``
    (an ensemble's: the members' mean prediction; planning scores each member's on its own)
    and copying the state's (no change), both in units of the spread of those pairs' change."""
    with torch.no_grad():
        predicted = dynamics(torch.from_numpy(before), torch.from_numpy(acts))
    b, n = torch.from_numpy(before), torch.from_numpy(after)
    change = _wrap_angles(n - b, dynamics.angles)
    unit = change.std(0).clamp_min(1e-12)
    error = _wrap_angles(predicted - n, dynamics.angles).abs() / unit
    return {"model": error.mean(0).tolist(), "copy": (change.abs() / unit).mean(0).tolist()}


def fit_read_dynamics_from(model, data=None, out=None, steps: int = 24000, seed: int = 0, step: str = "env",
                           members: int = 5) -> dict:
    """``wmkit fit-dynamics``: fit :class:`StateDynamics` (an ensemble of ``members`` networks, seeds
    ``seed`` on) on what ``model``'s head reads from the training episodes of ``data`` (default: the
    checkpoint's training data), score it on the held-out ones, and save it beside the checkpoint (or
    in ``out``). Returns the report, with the folder."""
    start = time.perf_counter()
    check_fit(step, steps, "read-state dynamics", members)
    trained_on, val_fraction = training_data(model)
    data = data or trained_on
    if not data:
        raise WmkitError("pass --data: the checkpoint does not name its training data")
    if out is None:
        if getattr(model, "checkpoint_path", None) is None:
            raise WmkitError("pass an output folder: the model was not loaded from a checkpoint")
        out = read_dynamics_folder(model.checkpoint_path)
    check_replaceable(out, META, "read-state dynamics")
    StateGoalDistance(model)  # refuses, before the fit, a head that misses what the goal distance needs
    store = EpisodeStore(data)
    held = read_step_pairs(model, store, model.frame_skip, "val", val_fraction)  # before the fit: refuses data without them
    dynamics = fit_read_dynamics(model, store, model.frame_skip, steps, seed=seed, val_fraction=val_fraction, step=step,
                                 members=members)
    error = held_out_error(dynamics, *held)
    report = {"data": str(data), "checkpoint": str(getattr(model, "checkpoint_path", "")),
              "model_fingerprint": model_fingerprint(model), "steps": steps, "seed": seed,
              "step": step, "members": members, "frame_skip": model.frame_skip, "names": list(model.state_head.names),
              "held_out_pairs": len(held[0]), "held_out_error": error, "seconds": round(time.perf_counter() - start, 1)}
    folder = save_read_dynamics(out, dynamics, report)
    return {**report, "folder": str(folder)}


def save_read_dynamics(folder, dynamics: StateDynamics, meta: dict) -> Path:
    """Write the dynamics atomically (complete or absent, as checkpoints are)."""
    from ..checkpoint import write_folder_atomic

    tensors = {k: v.detach().cpu().contiguous() for k, v in dynamics.state_dict().items()}
    text = json.dumps({**meta, "format": FORMAT, "state_dim": len(dynamics.mean), "angles": dynamics.angles,
                       "action_size": dynamics.action_size, "width": dynamics.width, "substeps": dynamics.substeps,
                       "members": dynamics.members},
                      indent=2, sort_keys=True)
    return write_folder_atomic(Path(folder), {WEIGHTS: tensors}, {META: text})


def load_read_dynamics(folder) -> StateDynamics:
    """Read dynamics written by :func:`save_read_dynamics` (safetensors and JSON: no pickle)."""
    return load_fitted(folder, WEIGHTS, META, FORMAT, "read-state dynamics", "wmkit fit-dynamics --ckpt CKPT",
                       lambda meta: StateDynamics(int(meta["state_dim"]), [int(a) for a in meta["angles"]],
                                                  int(meta["action_size"]), int(meta["width"]), int(meta["substeps"]),
                                                  int(meta.get("members", 1))))  # files from before ensembles: one network


def read_dynamics_for(model, folder: str | None = None) -> StateDynamics:
    """The read-state dynamics of a loaded model: ``folder``, or those fitted on the model's checkpoint;
    refused if they read other variables or take other actions than the model."""
    if not folder:
        if getattr(model, "checkpoint_path", None) is None:
            raise WmkitError("dynamics 'read-state' needs fitted dynamics: pass their folder, or load the model from a checkpoint")
        folder = read_dynamics_folder(model.checkpoint_path)
    dynamics = load_read_dynamics(folder)
    head = getattr(model, "state_head", None)
    names = list(head.names) if head is not None else []
    takes = dynamics.substeps * dynamics.action_size
    if dynamics.meta.get("names") != names or takes != model.cfg.action_dim:
        raise WmkitError(f"the read-state dynamics in {folder} read {dynamics.meta.get('names')} and take {takes} actions per "
                         f"model step, but this model reads {names} and takes {model.cfg.action_dim}: fit them on this "
                         f"checkpoint with `wmkit fit-dynamics`")
    check_fitted_on(model, dynamics.meta, folder, "read-state dynamics", "wmkit fit-dynamics --ckpt CKPT")
    return dynamics
