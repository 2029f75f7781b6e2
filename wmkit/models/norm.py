"""Batch normalisation over the *global* batch, with exact evaluation statistics.

The projector's BatchNorm decides what SIGReg sees, so under data parallelism its statistics must
come from the whole global batch, or N processes would train a different model from one process
with the same batch. ``torch.nn.SyncBatchNorm`` does this only on CUDA; this module does it
anywhere by summing moments with the differentiable :func:`wmkit.dist.all_reduce_sum` (gloo on
CPU, NCCL on GPU), and is an ordinary BatchNorm1d on a single process.

The variance is taken about the mean (two reductions), not as ``E[x^2] - E[x]^2``: an encoder whose
feature barely varies between frames (a variance of 1e-7 on values of order 1) would otherwise get
a variance that is mostly float32 rounding.

Running averages are a poor evaluation statistic when the feature moves faster than the average
follows it: a model then encodes differently in evaluation mode (validation, planning) than in
training. :func:`calibrate` replaces them with the exact mean and variance of the current weights
over reference observations; training calls it before every validation and checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ..dist import all_reduce_sum


def _global_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean and biased variance per column over the global batch (differentiable), and the count."""
    count = all_reduce_sum(torch.tensor(float(x.shape[0]), device=x.device, dtype=torch.float32))
    mean = all_reduce_sum(x.sum(0)) / count
    var = all_reduce_sum(((x - mean) ** 2).sum(0)) / count
    return mean, var, count


class GlobalBatchNorm1d(nn.BatchNorm1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        xf = x.float()
        mean, var, count = _global_moments(xf)  # biased, as BatchNorm normalises
        with torch.no_grad():
            self.num_batches_tracked += 1
            unbiased = var * count / (count - 1).clamp_min(1.0)
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(unbiased.detach(), self.momentum)
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        return (y * self.weight + self.bias).to(x.dtype)


@torch.no_grad()
def calibrate(norm: nn.BatchNorm1d, features: Iterable[torch.Tensor]) -> None:
    """Set ``norm``'s running mean and variance to the exact statistics of ``features`` (the
    inputs it would see), pooled over every process: afterwards evaluation mode normalises these
    inputs as training mode does a batch of them. Every process must pass the same number of
    tensors (collective reductions)."""
    x = torch.cat([f.float().reshape(-1, f.shape[-1]) for f in features])
    if x.shape[-1] != norm.num_features:
        raise ValueError(f"calibrate: features have {x.shape[-1]} columns, the norm normalises {norm.num_features}")
    mean, var, count = _global_moments(x)
    if count.item() < 2:
        raise ValueError(f"calibrate needs at least 2 reference rows over all processes, got {int(count.item())}")
    norm.running_mean.copy_(mean)
    norm.running_var.copy_(var * count / (count - 1))
