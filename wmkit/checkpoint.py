"""Training checkpoints: one documented on-disk format, written atomically, read without pickle.

A run folder holds its checkpoints::

    RUN/checkpoints/latest           text: the name of the newest step folder, e.g. step-00000123
    RUN/checkpoints/step-00000123/
      model.safetensors      the model's state dict (parameters and buffers)
      optimizer.safetensors  the tensors of an optimizer's state_dict(), named ``state.{param_id}.{key}``
                             (``param_groups.{i}.{key}`` for a tensor hyperparameter, ``....{j}`` in a list)
      optimizer.json         the rest of that state dict: param_groups (tuples such as betas become
                             lists) and every non-tensor value; a tensor stands there as {"__tensor__": name}
      extra.safetensors      named tensors the trainer adds (torch RNG state as uint8, EMA weights)
      trainer.json           the trainer's JSON dict (config, epoch, dataset fingerprint, numpy RNG and
                             scheduler state, wmkit version) plus "step", "format": "wmkit-checkpoint"
                             and "format_version": 1

The optimizer files are absent when no optimizer state was saved.

No pickle: ``torch.save`` files are pickles, and unpickling runs whatever code the file names, so a
shared checkpoint would be a program. safetensors holds tensor bytes and a JSON header, the rest is
JSON; wmkit never calls ``torch.load`` or ``pickle``.

Atomic: a trainer killed mid-save (preemption, OOM, Ctrl-C) must leave the previous checkpoint
usable. Files are written into a hidden sibling ``.step-00000123.tmp-<pid>``, fsynced, and the
folder renamed into place; ``latest`` is then replaced by rename too. So a ``step-*`` folder is
always complete, and ``latest`` only names complete folders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import DependencyMissingError, WmkitError

FORMAT, FORMAT_VERSION = "wmkit-checkpoint", 1
CHECKPOINT_DIR, LATEST_FILE = "checkpoints", "latest"
MODEL_FILE, EXTRA_FILE, TRAINER_FILE = "model.safetensors", "extra.safetensors", "trainer.json"
OPTIMIZER_FILE, OPTIMIZER_JSON = "optimizer.safetensors", "optimizer.json"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")
_STEP_RE = re.compile(r"step-(\d+)")
_TENSOR = "__tensor__"  # placeholder key in optimizer.json for a tensor kept in optimizer.safetensors


class CheckpointError(WmkitError):
    """A checkpoint that is missing, damaged, pickle-based or from a newer wmkit."""


@dataclass
class Checkpoint:
    path: Path  # the step folder that was read
    model_state: dict[str, torch.Tensor]
    meta: dict  # trainer.json without "format" and "format_version"
    optimizer_state: dict | None  # ready for optimizer.load_state_dict; None when none was saved
    extra: dict[str, torch.Tensor]

    @property
    def step(self) -> int | None:
        return self.meta.get("step")


def _safetensors():
    try:
        import safetensors
        import safetensors.torch  # noqa: F401  (save_file lives there)
    except ImportError as exc:
        raise DependencyMissingError(f"checkpoints are safetensors files, but safetensors is not installed ({exc}). "
                                     f"Install it with: pip install safetensors") from exc
    return safetensors


# ----- saving ----------------------------------------------------------------------------------
def _prepare(tensors, what: str) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors that share no memory: safetensors refuses shared storage
    (tied weights, slices of one flat buffer), so every later sharer is cloned."""
    if not isinstance(tensors, dict):
        raise CheckpointError(f"{what} must be a dict of name -> torch.Tensor, got a {type(tensors).__name__}")
    out, seen = {}, set()
    for name, t in tensors.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor) or t.layout != torch.strided:
            raise CheckpointError(f"{what}[{name!r}] is a {type(t).__name__} (layout {getattr(t, 'layout', None)}); expected a str "
                                  f"name and a dense torch.Tensor. Put other values in `meta`; densify sparse tensors with .to_dense()")
        t = t.detach().resolve_conj().resolve_neg().cpu().contiguous()  # .cpu() of a GPU tensor is a fresh copy
        if t.numel() and t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        if t.numel():  # empty tensors have no storage to share (safetensors skips them too)
            seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def _flatten_optimizer(state_dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into named tensors and a JSON tree with placeholders."""
    if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
        found = sorted(map(str, state_dict)) if isinstance(state_dict, dict) else type(state_dict).__name__
        raise CheckpointError(f"optimizer_state must be an optimizer's state_dict() with 'state' and 'param_groups', got {found}")
    tensors: dict[str, torch.Tensor] = {}

    def encode(value, name: str):
        if isinstance(value, torch.Tensor):
            tensors[name] = value
            return {_TENSOR: name}
        if isinstance(value, (list, tuple)):
            return [encode(v, f"{name}.{i}") for i, v in enumerate(value)]
        if isinstance(value, dict) and all(isinstance(k, str) for k in value) and _TENSOR not in value:
            return {k: encode(v, f"{name}.{k}") for k, v in value.items()}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise CheckpointError(f"optimizer state {name} is a {type(value).__name__} ({value!r:.80}), which neither safetensors nor JSON can store")

    for pid in state_dict["state"]:
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise CheckpointError(f"optimizer state is keyed by {pid!r}; expected the integer parameter ids of Optimizer.state_dict()")
    rest = {k: encode(v, k) for k, v in state_dict.items() if k != "state"}
    # JSON object keys are strings; loading turns the parameter ids back into ints.
    rest["state"] = {str(pid): encode(entry, f"state.{pid}") for pid, entry in state_dict["state"].items()}
    return _prepare(tensors, "optimizer_state"), rest


def _json_text(data: dict, what: str, sort_keys: bool) -> str:
    try:
        return json.dumps(data, indent=1, sort_keys=sort_keys) + "\n"
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{what} cannot be written as JSON ({exc}). Convert numpy arrays with .tolist() and numpy scalars "
                              f"with int()/float() (tuples are fine, they come back as lists); put tensors in `extra`") from exc


def _fsync(path: Path, text: str | None = None) -> None:
    """Write ``text`` to ``path`` if given, then flush ``path`` (a file or, on POSIX, a folder) to disk."""
    if text is not None:
        path.write_text(text, encoding="utf-8")
    if path.is_dir() and os.name != "posix":  # Windows cannot open a folder to fsync it
        return
    fd = os.open(path, os.O_RDONLY if path.is_dir() else os.O_RDWR)  # Windows fsyncs only writable files
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_folder_atomic(final: Path, tensor_files: dict[str, dict[str, torch.Tensor]], text_files: dict[str, str]) -> Path:
    """Write a folder of safetensors and text files so that it is complete or absent: into a hidden
    sibling, fsynced, then renamed into place (an existing folder of that name is replaced, and put
    back if the rename fails). Returns ``final``."""
    st = _safetensors()
    final = Path(final)
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp, old = parent / f".{final.name}.tmp-{os.getpid()}", parent / f".{final.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # left by an earlier crashed process that had our pid
    tmp.mkdir()
    try:
        for file, tensors in tensor_files.items():
            st.torch.save_file(tensors, str(tmp / file))
            _fsync(tmp / file)
        for file, text in text_files.items():
            _fsync(tmp / file, text)
        _fsync(tmp)
        if final.exists():  # a folder cannot be renamed onto a non-empty one: move the old one aside
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            try:
                os.replace(tmp, final)
            except OSError:
                os.replace(old, final)  # put the previous folder back before reporting the failure
                raise
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
        _fsync(parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after a successful rename; a partial folder otherwise
    return final


def save_checkpoint(run_dir, step: int, model_state: dict[str, torch.Tensor], meta: dict,
                    optimizer_state: dict | None = None, extra: dict[str, torch.Tensor] | None = None,
                    keep_last: int | None = 3) -> Path:
    """Write ``RUN/checkpoints/step-{step:08d}/`` atomically, point ``latest`` at it, and delete
    older step folders beyond ``keep_last`` (counting this one; ``None`` keeps all; folders of a
    higher step, left from a rewound run, are kept). A folder of the same step is replaced.
    Returns the step folder."""
    _safetensors()  # fail on a missing dependency before any work
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"step must be a non-negative int, got {step!r}")
    if keep_last is not None and (isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1):
        raise CheckpointError(f"keep_last must be None (keep every checkpoint) or an int >= 1, got {keep_last!r}")
    if not isinstance(meta, dict) or {"format", "format_version"} & meta.keys() or meta.get("step", step) != step:
        raise CheckpointError(f"meta must be a dict without the keys 'format' and 'format_version' (wmkit writes them) and with "
                              f"'step' absent or equal to {step}; got {meta!r:.200}")
    # Convert everything before touching the disk, so a bad argument leaves no folder behind.
    tensor_files = {MODEL_FILE: _prepare(model_state, "model_state"), EXTRA_FILE: _prepare(extra or {}, "extra")}
    text_files = {TRAINER_FILE: _json_text({**meta, "step": step, "format": FORMAT, "format_version": FORMAT_VERSION}, "meta", True)}
    if optimizer_state is not None:
        tensor_files[OPTIMIZER_FILE], rest = _flatten_optimizer(optimizer_state)
        text_files[OPTIMIZER_JSON] = _json_text(rest, "optimizer_state", False)  # keep torch's order

    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR
    name = f"step-{step:08d}"
    final = write_folder_atomic(ckpt_dir / name, tensor_files, text_files)
    _fsync(ckpt_dir / f".{LATEST_FILE}.tmp-{os.getpid()}", name + "\n")
    os.replace(ckpt_dir / f".{LATEST_FILE}.tmp-{os.getpid()}", ckpt_dir / LATEST_FILE)
    _fsync(ckpt_dir)
    if keep_last is not None:
        older = [path for s, path in _step_folders(ckpt_dir) if s < step]
        for path in older[: max(0, len(older) - (keep_last - 1))]:
            shutil.rmtree(path)
    return final


# ----- finding and loading -----------------------------------------------------------------
def _step_folders(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """Step folders, oldest first; the hidden temporary folders of unfinished saves never match."""
    return sorted((int(m.group(1)), p) for p in ckpt_dir.iterdir() if p.is_dir() and (m := _STEP_RE.fullmatch(p.name)))


def _latest_in(ckpt_dir: Path) -> Path | None:
    latest, folders = ckpt_dir / LATEST_FILE, _step_folders(ckpt_dir)
    if not latest.is_file():
        # A save killed between renaming its folder into place and writing `latest` (or a deleted
        # `latest`): every step folder is complete, so the newest one is the checkpoint.
        return folders[-1][1] if folders else None
    name = latest.read_text(encoding="utf-8").strip()
    if not _STEP_RE.fullmatch(name) or not (ckpt_dir / name).is_dir():
        raise CheckpointError(f"{latest} names {name!r}, but there is no such step folder in {ckpt_dir} (deleted, moved, or a "
                              f"damaged file?). Step folders present: {', '.join(p.name for _, p in folders) or 'none'}. "
                              f"Pass one of them directly, or write its name into {latest}")
    return ckpt_dir / name


def find_latest(run_dir) -> Path | None:
    """The newest step folder of a run, or ``None`` when the run has saved no checkpoint yet
    (also when ``run_dir`` does not exist). Raises when ``latest`` names a missing folder."""
    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR
    return _latest_in(ckpt_dir) if ckpt_dir.is_dir() else None


def _pickle_refusal(file: Path) -> CheckpointError:
    return CheckpointError(
        f"{file.parent} has no {MODEL_FILE} but a pickle-based checkpoint, {file.name}. wmkit never unpickles checkpoints: "
        f"unpickling can execute arbitrary code hidden in the file. If you trust the file, convert it yourself:\n"
        f"    import torch, safetensors.torch\n"
        f"    state = torch.load({str(file)!r}, map_location='cpu', weights_only=True)  # or state['model'] if nested\n"
        f"    safetensors.torch.save_file({{k: v.contiguous() for k, v in state.items()}}, 'model.safetensors')\n"
        f"or, for a complete wmkit checkpoint: wmkit.checkpoint.save_checkpoint('RUN', step, state, meta={{}})")


def resolve_checkpoint(path) -> Path:
    """The step folder meant by ``path``: a run folder or its ``checkpoints/`` folder (the step
    folder named by ``latest``), a step folder, or a file inside one."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist; pass a run folder, its {CHECKPOINT_DIR}/ folder or a step folder")
    if path.is_file():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise _pickle_refusal(path)
        path = path.parent  # model.safetensors, trainer.json, latest, ...: the folder holding it
    folder = path
    if not (path / MODEL_FILE).is_file():
        folder = _latest_in(path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path) or path
    if (folder / MODEL_FILE).is_file():
        return folder
    pickles = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise _pickle_refusal(pickles[0])
    if folder != path:
        raise CheckpointError(f"{folder}, the newest checkpoint of {path}, has no {MODEL_FILE}; it is damaged. Pass an older step folder")
    raise CheckpointError(f"{path} holds no wmkit checkpoint: no {MODEL_FILE}, no {CHECKPOINT_DIR}/{LATEST_FILE} and no step-* "
                          f"folders. Pass a run folder that has saved at least once, or one of its step folders")


def _load_tensors(path: Path, device) -> dict[str, torch.Tensor]:
    st = _safetensors()
    try:
        with st.safe_open(str(path), framework="pt", device=device) as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (st.SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc}); it is truncated or damaged (an interrupted "
                              f"copy?). Restore it, or resume from an older step folder in {path.parent.parent}") from exc
    # CPU tensors from safe_open map the file; copy them so they outlive pruning or overwriting of it.
    return {k: v.clone() if v.device.type == "cpu" else v for k, v in tensors.items()}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path.parent} has {MODEL_FILE} but no {path.name}; the checkpoint is incomplete. "
                              f"Restore the file or use another step folder")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the file is damaged. Restore it or use another step folder") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} holds a JSON {type(data).__name__}, expected an object; the file is damaged")
    return data


def _unflatten_optimizer(rest: dict, tensors: dict[str, torch.Tensor], path: Path) -> dict:
    def decode(value):
        if isinstance(value, dict) and set(value) == {_TENSOR}:
            if value[_TENSOR] not in tensors:
                raise CheckpointError(f"{path} refers to tensor {value[_TENSOR]!r}, which {OPTIMIZER_FILE} lacks; the files do not belong together")
            return tensors[value[_TENSOR]]
        if isinstance(value, dict):
            return {k: decode(v) for k, v in value.items()}
        return [decode(v) for v in value] if isinstance(value, list) else value

    try:
        state = {int(pid): decode(entry) for pid, entry in rest["state"].items()}
    except (KeyError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path} has no valid 'state' of parameter ids ({exc!r}); the file is damaged") from exc
    return {**{k: decode(v) for k, v in rest.items() if k != "state"}, "state": state}


def load_checkpoint(path, map_location="cpu") -> Checkpoint:
    """Read the checkpoint at ``path`` (see :func:`resolve_checkpoint`) with tensors on ``map_location``."""
    folder = resolve_checkpoint(path)
    device = str(map_location) if isinstance(map_location, torch.device) else map_location
    trainer = folder / TRAINER_FILE
    meta = _read_json(trainer)  # checked first, so a newer format is reported as such, not as a tensor error
    version = meta.get("format_version")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{trainer} has format {meta.get('format')!r}, expected {FORMAT!r}; it was not written by wmkit.checkpoint")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{trainer} has format_version {version!r}, expected an int >= 1; the file is damaged")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{trainer} has format_version {version}; this wmkit reads up to {FORMAT_VERSION}. Upgrade wmkit")
    meta = {k: v for k, v in meta.items() if k not in ("format", "format_version")}
    optimizer_state = None
    if (folder / OPTIMIZER_FILE).is_file() or (folder / OPTIMIZER_JSON).is_file():
        rest = _read_json(folder / OPTIMIZER_JSON)
        if not (folder / OPTIMIZER_FILE).is_file():
            raise CheckpointError(f"{folder} has {OPTIMIZER_JSON} but no {OPTIMIZER_FILE}; the optimizer state is incomplete. "
                                  f"Restore the file or use another step folder")
        optimizer_state = _unflatten_optimizer(rest, _load_tensors(folder / OPTIMIZER_FILE, device), folder / OPTIMIZER_JSON)
    extra = _load_tensors(folder / EXTRA_FILE, device) if (folder / EXTRA_FILE).is_file() else {}
    return Checkpoint(folder, _load_tensors(folder / MODEL_FILE, device), meta, optimizer_state, extra)
