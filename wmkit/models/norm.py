"""Batch normalisation over the *global* batch.

The projector's BatchNorm decides what SIGReg sees, so under data parallelism its statistics must
come from the whole global batch, or N processes would train a different model from one process
with the same batch. ``torch.nn.SyncBatchNorm`` does this only on CUDA; this module does it
anywhere by summing moments with the differentiable :func:`wmkit.dist.all_reduce_sum` (gloo on
CPU, NCCL on GPU), and is an ordinary BatchNorm1d on a single process.
"""

from __future__ import annotations

import torch
from torch import nn

from ..dist import all_reduce_sum


class GlobalBatchNorm1d(nn.BatchNorm1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        count = all_reduce_sum(torch.tensor(float(x.shape[0]), device=x.device, dtype=torch.float32))
        xf = x.float()
        moments = all_reduce_sum(torch.stack([xf.sum(0), (xf * xf).sum(0)]))
        mean = moments[0] / count
        var = (moments[1] / count - mean * mean).clamp_min(0.0)  # biased, as BatchNorm normalises
        with torch.no_grad():
            self.num_batches_tracked += 1
            unbiased = var * count / (count - 1).clamp_min(1.0)
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(unbiased.detach(), self.momentum)
        y = (xf - mean) * torch.rsqrt(var + self.eps)
        return (y * self.weight + self.bias).to(x.dtype)
