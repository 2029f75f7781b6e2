"""Probe regressions: R^2 of a readout from features to targets on held-out rows.

A linear probe (:func:`ridge_r2`, its strength picked on held-out training rows) and a small MLP
(:func:`mlp_r2`), each fitted per target column, optionally on each column's own rows (a ball's
position only where the frame shows it). :mod:`wmkit.eval.probe` feeds them latents and states.
"""

from __future__ import annotations

import numpy as np
import torch


# ridge strengths (times the number of training frames, on standardised features) a linear probe
# picks from, per variable, on held-out training frames: too weak a penalty lets a rarely active
# feature (a cell a ball seldom crosses) fit noise, too strong a one blurs what is there
RIDGE_ALPHAS = (1e-3, 1e-2, 1e-1, 1.0)


def _ridge_fits(z: np.ndarray, y: np.ndarray, alphas) -> list:
    """One ridge fit ``(mean, scale, y_mean, weights)`` per alpha, from one eigendecomposition.
    Features are standardised on ``z``; the intercept (the mean of ``y``) is never shrunk."""
    mu, sd = z.mean(0), z.std(0) + 1e-8
    a = (z - mu) / sd
    y_mean = y.mean(0)
    lam, v = np.linalg.eigh(a.T @ a)
    proj = v.T @ (a.T @ (y - y_mean))
    return [(mu, sd, y_mean, v @ (proj / (lam + alpha * len(a))[:, None])) for alpha in alphas]


def _r2(fit, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    mu, sd, y_mean, w = fit
    resid = ((y - ((z - mu) / sd) @ w - y_mean) ** 2).sum(0)
    return 1.0 - resid / np.maximum(((y - y.mean(0)) ** 2).sum(0), 1e-12)


def ridge_r2(z_train, y_train, z_test, y_test, alpha: float | None = None, mask_train=None, mask_test=None) -> np.ndarray:
    """Per-column R^2 on the test set of a ridge fit (features standardised on the train set).
    ``alpha=None`` picks the strength per column from :data:`RIDGE_ALPHAS` by R^2 on the last fifth
    of the training rows (rows come episode by episode, so that is mostly other episodes), then
    refits on all of them. With masks ``(N, K)`` bool, column k is fitted and scored on its own rows only."""
    if mask_train is not None:
        out = np.full(y_train.shape[1], np.nan)
        for k in range(y_train.shape[1]):
            tr, te = mask_train[:, k], mask_test[:, k]
            if tr.sum() > z_train.shape[1] and te.sum() > 1:
                out[k] = ridge_r2(z_train[tr], y_train[tr, k : k + 1], z_test[te], y_test[te, k : k + 1], alpha)[0]
        return out
    if alpha is not None:
        return _r2(_ridge_fits(z_train, y_train, [alpha])[0], z_test, y_test)
    cut = len(z_train) - len(z_train) // 5
    checks = np.stack([_r2(f, z_train[cut:], y_train[cut:]) for f in _ridge_fits(z_train[:cut], y_train[:cut], RIDGE_ALPHAS)])
    best = checks.argmax(0)  # per column
    fits = _ridge_fits(z_train, y_train, RIDGE_ALPHAS)
    return np.array([_r2(fits[best[k]], z_test, y_test)[k] for k in range(y_train.shape[1])])


def mlp_r2(z_train, y_train, z_test, y_test, mask_train=None, mask_test=None, hidden: int = 256, steps: int = 3000,
           batch_size: int = 256, lr: float = 1e-3, seed: int = 0) -> np.ndarray:
    """Per-column R^2 on the test set of a two-hidden-layer MLP probe (features and targets
    standardised on the train set; Adam with weight decay, a fixed number of steps and seed).

    Where a linear probe fails, this one can still read a variable the latent holds non-linearly.
    Its failing proves less: on a few thousand frames it cannot learn every readout (it misses a
    small shape's orientation even from raw pixels). With masks ``(N, K)`` bool, each column's loss
    and score use its own rows only."""
    g = torch.Generator().manual_seed(seed)
    mu, sd = z_train.mean(0), z_train.std(0) + 1e-8
    a = torch.tensor((z_train - mu) / sd, dtype=torch.float32)
    b = torch.tensor((z_test - mu) / sd, dtype=torch.float32)
    m_tr = torch.ones(y_train.shape, dtype=torch.bool) if mask_train is None else torch.from_numpy(mask_train)
    m_te = np.ones(y_test.shape, dtype=bool) if mask_test is None else mask_test
    y = torch.tensor(np.where(m_tr.numpy(), y_train, 0.0), dtype=torch.float32)
    count = m_tr.sum(0).clamp_min(1)
    y_mu = (y * m_tr).sum(0) / count
    y_sd = (((y - y_mu) ** 2 * m_tr).sum(0) / count).sqrt() + 1e-8
    y = (y - y_mu) / y_sd
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(a.shape[1], hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden),
                                  torch.nn.GELU(), torch.nn.Linear(hidden, y.shape[1]))
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-2)
    with torch.enable_grad():
        for _ in range(steps):
            rows = torch.randint(0, len(a), (min(batch_size, len(a)),), generator=g)
            err = (net(a[rows]) - y[rows]) ** 2 * m_tr[rows]
            loss = err.sum() / m_tr[rows].sum().clamp_min(1)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = (net(b) * y_sd + y_mu).numpy().astype(np.float64)
    out = np.full(y_train.shape[1], np.nan)
    for k in range(y_train.shape[1]):
        te = m_te[:, k]
        if m_tr[:, k].sum() > z_train.shape[1] and te.sum() > 1:
            truth = y_test[te, k]
            out[k] = 1.0 - ((truth - pred[te, k]) ** 2).sum() / max(((truth - truth.mean()) ** 2).sum(), 1e-12)
    return out
