"""Modules fitted on a checkpoint and kept beside it (a learned goal distance, read-state dynamics):
where they live (``RUN/<name>/step-N``), how they are read back (safetensors and JSON, no pickle), and
the checks that keep one from replacing a folder that holds something else or from being used beside
a model other than the one it was fitted on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .checkpoint import CheckpointError, _load_tensors
from .errors import WmkitError


def beside_checkpoint(checkpoint_path, name: str, what: str, flags: str) -> Path:
    """``RUN/name/step-N`` for a checkpoint folder ``RUN/checkpoints/step-N``: where something fitted
    on that checkpoint (``what``; passed explicitly with ``flags`` otherwise) is kept."""
    step = Path(checkpoint_path).resolve()
    if step.parent.name != "checkpoints":
        raise CheckpointError(f"{checkpoint_path} is not a step folder inside a run's checkpoints/ folder, so there is no run "
                              f"folder to keep its {what} in: pass that folder explicitly ({flags})")
    return step.parent.parent / name / step.name


def model_fingerprint(model) -> str:
    """A short hash of a model's weights (every tensor's name, type, shape and values). A module fitted
    on a checkpoint records it, so it is refused beside any other model, wherever the folders move."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def check_fitted_on(model, meta: dict, folder, what: str, command: str) -> None:
    """Refuse a fitted module (``what`` in ``folder``, its JSON ``meta``) whose recorded model
    fingerprint is not ``model``'s (files written before fingerprints pass)."""
    recorded = meta.get("model_fingerprint")
    if recorded and recorded != (actual := model_fingerprint(model)):
        fitted_on = meta.get("checkpoint") or "unnamed"
        same_path = fitted_on == str(getattr(model, "checkpoint_path", None))
        where = f"{fitted_on} when it held other weights (replaced since)" if same_path else fitted_on
        raise WmkitError(f"{folder} holds {what} fitted on another model ({where}; weights {recorded}, this model's "
                         f"{actual}): fit one on this checkpoint with `{command}`")


def load_fitted(folder, weights: str, meta_name: str, fmt: str, what: str, command: str, build):
    """Read a module fitted on a checkpoint (a goal distance, read-state dynamics) from ``folder``: its
    JSON ``meta_name`` (whose ``format`` must be ``fmt``) and safetensors ``weights`` (no pickle).
    ``build(meta)`` makes the empty module from the JSON; ``what`` and ``command`` name it and the
    command that fits it in errors. Returns the module in evaluation mode, with ``.meta``."""
    folder = Path(folder)
    if not (folder / weights).is_file() or not (folder / meta_name).is_file():
        raise WmkitError(f"no {what} in {folder} (expected {weights} and {meta_name}); fit it with `{command}`")
    try:
        meta = json.loads((folder / meta_name).read_text())
        module = build(meta) if meta.get("format") == fmt else None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise WmkitError(f"{folder / meta_name} is damaged ({exc}); fit it again with `{command.split(' --')[0]}`") from exc
    if module is None:
        raise WmkitError(f"{folder / meta_name} is not a wmkit {what} (format {meta.get('format')!r})")
    tensors = _load_tensors(folder / weights, "cpu")  # a damaged file: a CheckpointError that says so
    try:
        module.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise WmkitError(f"{folder}: the weights do not fit the {what} {meta_name} describes ({exc})") from exc
    module.meta = meta
    return module.eval()


def check_replaceable(folder, meta_name: str, what: str) -> None:
    """Refuse to write a fitted module over a folder that holds something else: writing replaces the
    whole folder, so a mistyped ``--out`` must not take a run or a dataset with it."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or (any(folder.iterdir()) and not (folder / meta_name).is_file())):
        raise WmkitError(f"{folder} exists and holds no {what} ({meta_name}); writing would replace it: pass a new or "
                         f"empty folder as --out")
