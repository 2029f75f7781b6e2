"""How a prediction is scored against the latents that came: the squared or absolute error, the nearest of
several imagined futures, and the weights of object tokens whose presence changes."""

from __future__ import annotations

import torch


PREDICTION_ERRORS = ("squared", "absolute")


def _errors(diff: torch.Tensor, error: str) -> torch.Tensor:
    """Each number's error from its difference: squared or absolute (one of ``PREDICTION_ERRORS``)."""
    if error not in PREDICTION_ERRORS:
        raise ValueError(f"prediction error {error!r}; expected one of {PREDICTION_ERRORS}")
    return diff.square() if error == "squared" else diff.abs()


def prediction_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
                    error: str = "squared") -> torch.Tensor:
    """Mean error between predicted and target latents (any matching shapes), each number's
    error times its ``weights`` when given (broadcast to the same shape). ``error``: 'squared' or
    'absolute' (``TrainConfig.prediction_error``)."""
    each = _errors(pred.float() - target.float(), error)
    return each.mean() if weights is None else (weights * each).mean()


OTHER_FUTURES_SHARE = 0.05


def nearest_future_loss(imagined: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
                        error: str = "squared") -> tuple[torch.Tensor, torch.Tensor]:
    """The rollout loss of a predictor that imagines several futures, ``imagined`` ``(B, F, H, D)``, of what
    came, ``target`` ``(B, H, D)`` (``weights`` as :func:`prediction_loss`'s): each window's error is that of
    its nearest future, plus ``OTHER_FUTURES_SHARE`` of the mean over all of them, so a future that is never
    nearest still learns (and can become so). One future by squared error is least at the mean of what can
    follow, which none of them need be; the nearest of several is least when they spread over what can
    follow. -> (the loss, the nearest future of each window ``(B, H, D)``)."""
    each = _errors(imagined.float() - target.float()[:, None], error)
    if weights is not None:
        each = weights[:, None] * each
    per_future = each.flatten(2).mean(-1)  # (B, F)
    best = per_future.argmin(1)
    loss = ((1.0 - OTHER_FUTURES_SHARE) * per_future.gather(1, best[:, None]).squeeze(1)
            + OTHER_FUTURES_SHARE * per_future.mean(1)).mean()
    return loss, imagined[torch.arange(len(imagined)), best]


def presence_change_weights(before: torch.Tensor, after: torch.Tensor, num: int, weight: float) -> torch.Tensor:
    """Per-number weights of object latents ``after`` ``(..., K * d)`` predicted from the frames ``before``:
    every number of a keypoint whose presence changes by more than 0.5 between the two (a ball coming out
    from behind the screen, or going in) weighs ``weight``, the rest 1. Such a token's error is of order 1,
    against a few thousandths for a frame of motion, and left at 1 it outweighs the motion (collisions
    included) that the rest of the latent must learn (``presence_change_weight``, BENCHMARKS.md)."""
    d = after.shape[-1] // num
    g0 = before.reshape(*before.shape[:-1], num, d)[..., 2]
    g1 = after.reshape(*after.shape[:-1], num, d)[..., 2]
    w = torch.where((g1 - g0).abs() > 0.5, weight, 1.0).to(after.dtype)
    return w[..., None].expand(*w.shape, d).reshape(after.shape)
