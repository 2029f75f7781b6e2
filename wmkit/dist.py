"""The only module that touches ``torch.distributed``. Everything else is rank-agnostic and calls
these helpers, which are the identity on a single process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch

from .errors import WmkitError


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """'auto' -> CUDA when available, else CPU. Asking for CUDA without one is an error, never a
    silent CPU run."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda":
        if not torch.cuda.is_available():
            raise WmkitError("device=cuda was requested but torch sees no CUDA device; use device=cpu or install a CUDA build of torch")
        return torch.device("cuda", local_rank)
    if preference == "cpu":
        return torch.device("cpu")
    raise WmkitError(f"unknown device {preference!r}; expected auto, cpu or cuda")


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Join the process group when launched by ``torchrun`` (RANK/WORLD_SIZE set), else run alone.
    A torchrun environment whose initialisation fails raises: no silent single-process fallback."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistContext(device=pick_device(device_preference))
    import torch.distributed as dist

    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        timeout = float(os.environ.get("WMKIT_DIST_TIMEOUT_S", 600))
    except ValueError as exc:
        raise WmkitError(f"torchrun environment found but malformed ({exc}): RANK={os.environ['RANK']!r}, "
                         f"WORLD_SIZE={os.environ['WORLD_SIZE']!r}; launch with torchrun or unset them") from exc
    device = pick_device(device_preference, local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        try:
            # a bounded wait: a rendezvous that cannot happen fails instead of hanging for 30 minutes
            dist.init_process_group(backend=backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout))
        except (RuntimeError, ValueError, OSError) as exc:
            raise WmkitError(
                f"torchrun environment found (RANK={rank}, WORLD_SIZE={world}, MASTER_ADDR={os.environ.get('MASTER_ADDR')}, "
                f"MASTER_PORT={os.environ.get('MASTER_PORT')}) but the {backend} process group failed to start: {exc}. "
                f"Check the rendezvous address and that every node can reach it; unset RANK/WORLD_SIZE to train on one process"
            ) from exc
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device)


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over ranks (identity on one process).

    The backward pass all-reduces the incoming gradient too, so every rank's local samples receive
    ``world_size`` times the gradient of the (identical) global statistic; DDP's gradient averaging
    divides that back out, giving exactly the single-process gradient of the global-batch loss.
    """
    if not is_distributed():
        return tensor
    return _AllReduceSum.apply(tensor)


class _AllReduceSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        torch.distributed.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        # d(sum_r x_r)/dx_q = 1 for every rank's loss: this rank's input collects all ranks' gradients
        out = grad.clone()
        torch.distributed.all_reduce(out)
        return out


def mean_over_ranks(values: dict[str, float], device: torch.device) -> dict[str, float]:
    """Average logged scalars over ranks, so rank 0 logs the global-batch value."""
    if not is_distributed():
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    t /= torch.distributed.get_world_size()
    return dict(zip(keys, t.tolist()))


def broadcast_flag(flag: bool, device: torch.device) -> bool:
    """True on every rank when any rank raised the flag (e.g. SIGTERM received)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier() -> None:
    if is_distributed():
        torch.distributed.barrier()


def cleanup() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
