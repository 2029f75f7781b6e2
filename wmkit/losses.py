"""Objectives as pure functions of tensors. Each returns a tensor; :func:`world_model_losses`
returns a dict of named terms; the trainer weights them (weights are config) and logs every one.

Batch statistics (SIGReg's characteristic function, VICReg's moments) are summed over ranks with
:func:`wmkit.dist.all_reduce_sum`, so on N processes each term is the one a single process would
compute on the whole global batch, values and gradients alike.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .dist import all_reduce_sum
from .prediction_errors import (PREDICTION_ERRORS, nearest_future_loss, prediction_loss,  # noqa: F401 (re-exported)
                                presence_change_weights)
from .models.encoders import pixels
from .models.objects import unpack
from .occlusion import occlusion_consistency, parse_colour


def sigreg(z: torch.Tensor, num_projections: int = 256, num_knots: int = 17, generator: torch.Generator | None = None,
           t_max: float = 3.0) -> torch.Tensor:
    """Sketched isotropic-Gaussian regulariser (SIGReg; Balestriero & LeCun 2025, "LeJEPA").

    For random unit directions ``u``, the 1-D projections ``x = z u`` are compared with N(0, 1)
    through the Epps-Pulley statistic: the weighted squared distance between the empirical
    characteristic function ``phi_N(t) = mean_n exp(i t x_n)`` and ``exp(-t^2 / 2)``,
    ``int |phi_N(t) - exp(-t^2/2)|^2 w(t) dt`` with ``w(t) = exp(-t^2 / 2)``, integrated by the
    trapezoid rule on ``num_knots`` knots over ``[-t_max, t_max]`` (even integrand: twice ``[0, t_max]``).
    Averaged over directions. About 0 for isotropic standard Gaussian embeddings, large when they
    collapse. ``z`` is ``(N, D)``; the directions come from ``generator`` (same seed on every rank).
    """
    n, d = z.shape
    z = z.float()
    u = torch.randn(d, num_projections, generator=generator, device="cpu").to(z.device)
    u = u / u.norm(dim=0, keepdim=True)
    t = torch.linspace(0.0, t_max, num_knots, device=z.device)
    # the empirical characteristic function is a mean over samples: sum locally, then over ranks
    stats = _CharacteristicSums.apply(z @ u, t)  # (2, M, K)
    count = torch.tensor(float(n), device=z.device)
    stats, count = all_reduce_sum(stats), all_reduce_sum(count)
    real, imag = stats[0] / count, stats[1] / count
    gauss = torch.exp(-0.5 * t**2)
    err = ((real - gauss) ** 2 + imag**2) * gauss  # (M, K)
    integral = 2.0 * torch.trapezoid(err, t, dim=-1)
    return integral.mean()


class _CharacteristicSums(torch.autograd.Function):
    """``sum_n cos(t_k x_n)`` and ``sum_n sin(t_k x_n)`` of projections ``x`` (N, M) at knots ``t``
    (K,): ``(2, M, K)``, the same numbers as ``torch.cos(x[..., None] * t).sum(0)`` (and ``sin``).

    Written with autograd, the backward pass evaluates every sine and cosine a second time (the
    derivative of ``cos`` is ``-sin``); here the forward keeps them, and the gradient is one
    contraction over the knots, ``dx_nm = sum_k t_k (g_sin,mk cos_nmk - g_cos,mk sin_nmk)``: half
    the transcendental work (which took about half of a per-region model's training step), for
    keeping both ``(N, M, K)`` tensors until the backward pass instead of one."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        xt = x.unsqueeze(-1) * t  # (N, M, K)
        cos, sin = torch.cos(xt), torch.sin(xt)
        ctx.save_for_backward(cos, sin, t)
        return torch.stack([cos.sum(0), sin.sum(0)])

    @staticmethod
    @torch.autograd.function.once_differentiable  # the saved cosines are constants to a second derivative
    def backward(ctx, grad: torch.Tensor):
        cos, sin, t = ctx.saved_tensors
        weights = grad * t  # (2, M, K): d cos(tx)/dx = -t sin(tx), d sin(tx)/dx = t cos(tx)
        dx = torch.einsum("nmk,mk->nm", cos, weights[1]) - torch.einsum("nmk,mk->nm", sin, weights[0])
        return dx, None


def vicreg_terms(z: torch.Tensor, eps: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """VICReg's variance and covariance terms (Bardes et al. 2022, eqs. 1-4) on ``(N, D)`` embeddings,
    from global-batch moments: hinge on the per-dimension std (target 1), and the mean squared
    off-diagonal covariance scaled by 1/D."""
    n, d = z.shape
    z = z.float()
    count = all_reduce_sum(torch.tensor(float(n), device=z.device))
    total = all_reduce_sum(z.sum(0))
    outer = all_reduce_sum(z.T @ z)
    mean = total / count
    cov = (outer - count * torch.outer(mean, mean)) / (count - 1)
    std = torch.sqrt(torch.diagonal(cov) + eps)
    var_loss = F.relu(1.0 - std).mean()
    off = cov - torch.diag(torch.diagonal(cov))
    cov_loss = (off**2).sum() / d
    return var_loss, cov_loss


def effective_rank(z: torch.Tensor) -> float:
    """exp(entropy) of the normalised singular values of centred ``(N, D)`` embeddings
    (Roy & Vetterli 2007): D for isotropic embeddings, near 1 when they collapse to a line."""
    z = z.detach().float()
    s = torch.linalg.svdvals(z - z.mean(0))
    p = s / s.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return float(math.exp(entropy.item()))


def subsample(x: torch.Tensor, most: int, generator: torch.Generator) -> torch.Tensor:
    """At most ``most`` rows of ``x``, a random subset (from ``generator``) when it has more."""
    if x.shape[0] <= most:
        return x
    return x[torch.randperm(x.shape[0], generator=generator)[:most].to(x.device)]


def world_model_losses(model, batch: dict[str, torch.Tensor], cfg, generator: torch.Generator,
                       target_encoder=None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """All loss terms of one batch, by name, and the latents ``(B, T, D)`` (for monitoring).

    ``model`` is a :class:`~wmkit.models.WorldModel`; ``cfg`` a :class:`~wmkit.config.TrainConfig`.
    - ``pred``: teacher-forced next-latent error, predictor(z_<=t, a_<=t) vs z_t+1;
    - ``pred_decoded``: the same step's error in pictures drawn by a fixed decoder, when
      ``cfg.pred_decoded_weight > 0`` (:func:`decoded_prediction_loss`);
    - ``rollout``: open-loop error over ``cfg.rollout_steps`` steps from the first
      ``cfg.rollout_context`` latents (teacher-forced; a drawn number with ``cfg.rollout_context_min``);
    - ``sigreg`` / ``vic_var`` + ``vic_cov``: anti-collapse on all B*T latents;
      with ``ema``, targets come from the EMA encoder instead (no gradient);
    - ``inverse``: a_t from (z_t, z_t+1), when ``cfg.inverse_weight > 0``;
    - ``temporal``: SIGReg on within-window deviations, when ``cfg.temporal_weight > 0``;
    - ``appearance``: slowness and spread of the appearance channels, when ``cfg.appearance_channels > 0``
      (:func:`appearance_loss`); ``sigreg`` and ``temporal`` then leave those channels out;
    - ``recon``: one frame per window decoded from its latent vs the frame, when ``cfg.recon_weight > 0``;
    - ``presence``: the object latent's mean keypoint presence, when ``cfg.presence_weight > 0``;
    - ``jump``: a price on keypoint jumps, when ``cfg.jump_weight > 0``;
    - ``occlude``: occlusion consistency of the keypoints, when ``cfg.occlude_weight > 0``
      (:func:`~wmkit.occlusion.occlusion_consistency`);
    - ``pixel`` (objective='pixel'): decoded prediction vs next frame, plus reconstruction.
    """
    actions = batch["actions"]
    terms: dict[str, torch.Tensor] = {}
    if "latents" in batch:  # a frozen encoder's stored latents (cache_latents): only the predictor and heads learn,
        z = batch["latents"]  # so the regularisers of the latent, constants here, are left out
        return _predictor_terms(model, z, z, actions, cfg, terms, generator, batch.get("state")), z
    obs = {k: batch[k] for k in model.cfg.obs_keys}
    z = model.encode(obs)  # (B, T, D)
    if cfg.objective == "pixel":
        frames = pixels(obs["rgb"])  # (B, T, 3, H, W)
        pred = model.predict(z[:, :-1], actions[:, :-1])
        terms["pixel"] = F.mse_loss(model.decode(pred), frames[:, 1:]) + F.mse_loss(model.decode(z), frames)
        return terms, z
    if target_encoder is not None:
        with torch.no_grad():
            target = target_encoder.encode(obs)
    else:
        target = z
    _predictor_terms(model, z, target, actions, cfg, terms, generator, batch.get("state"))
    # every latent vector is a sample: one per frame, or with a latent map (model.grid) one per
    # cell, so that regions, not whole maps, are pushed toward an isotropic Gaussian
    cell = model.cfg.embed_dim
    shown = cell - cfg.appearance_channels  # the channels the motion-driven terms see; the rest hold appearance
    flat = z.reshape(-1, cell)[:, :shown] if model.cfg.encoder != "objects" else z.reshape(-1, z.shape[-1])
    if cfg.regularizer == "sigreg" and cfg.sigreg_weight > 0:
        terms["sigreg"] = sigreg(subsample(flat, cfg.sigreg_samples, generator), cfg.sigreg_projections, cfg.sigreg_knots, generator)
    elif cfg.regularizer == "vicreg":
        terms["vic_var"], terms["vic_cov"] = vicreg_terms(flat)
    if cfg.temporal_weight > 0 and z.shape[1] > 1:
        # static content (a scene's colours, where its screen stands) satisfies a regulariser over
        # the batch by itself; pushing the within-window deviations toward a Gaussian of fixed
        # spread makes the encoder represent what moves, which is what the predictor must model
        # (deviations from a T-frame mean spread sqrt((T-1)/T) less than the frames themselves)
        dev = temporal_deviations(z, cell, shown) / cfg.temporal_scale
        terms["temporal"] = sigreg(subsample(dev, cfg.sigreg_samples, generator), cfg.sigreg_projections, cfg.sigreg_knots, generator)
    if cfg.appearance_channels and cfg.appearance_weight > 0:
        weights = moving_cells(obs["rgb"], model.cfg.grid) if model.cfg.grid and "rgb" in obs else None
        terms["appearance"] = appearance_loss(z, cell, cfg.appearance_channels, weights)
    if cfg.recon_weight > 0:
        if model.decoder is None:
            raise ValueError("recon_weight > 0 needs a model built with a pixel decoder")
        # one frame per window (a different one per window, drawn from the generator) keeps the
        # decoder's cost a fraction of the encoder's
        b, t = z.shape[:2]
        if cfg.recon_frames <= 1:
            picks = [torch.randint(0, t, (b,), generator=generator).to(z.device)]
        else:  # several different frames of each window
            picks = list(torch.rand(b, t, generator=generator).argsort(1)[:, : min(cfg.recon_frames, t)].to(z.device).T)
        rows = torch.arange(b, device=z.device)
        total, norm = 0.0, 0.0
        for pick in picks:
            frames = pixels(obs["rgb"][rows, pick])  # (B, 3, H, W)
            err = (model.decode(z[rows, pick]) - frames) ** 2
            weight = (1.0 + cfg.recon_focus * moving_pixels(obs["rgb"], pick, reference=cfg.recon_focus_from)[:, None]
                      if cfg.recon_focus > 0
                      else torch.ones_like(err[:, :1]))
            total, norm = total + (weight * err).sum(), norm + weight.sum() * err.shape[1]
        terms["recon"] = total / norm
    if cfg.presence_weight > 0:  # objects latents: the keypoints' mean presence (see TrainConfig.presence_weight)
        terms["presence"] = z.reshape(*z.shape[:2], model.cfg.objects, -1)[..., 2].mean()
    if cfg.jump_weight > 0 and z.shape[1] >= 3:  # objects latents: a price on keypoint jumps (TrainConfig.jump_weight)
        terms["jump"] = keypoint_jumps(z, model.cfg.objects, model.cfg.object_appearance, cfg.jump_size)
    if cfg.occlude_weight > 0:  # objects latents: occlusion consistency (TrainConfig.occlude_weight)
        terms["occlude"] = occlusion_consistency(model.encoder, obs["rgb"], z, model.cfg.objects,
                                                 model.cfg.object_appearance, cfg.occlude_radius, generator,
                                                 parse_colour(cfg.occlude_colour), cfg.occlude_vanish)
    return terms, z


def keypoint_jumps(z: torch.Tensor, num: int, appearance: int, size: float) -> torch.Tensor:
    """Object latents ``z`` (B, T, K * (3 + A)) with T >= 3: the mean over keypoints and frames of the squared
    part beyond ``size`` of each keypoint's change of velocity (``xy[t+1] - 2 xy[t] + xy[t-1]``, its length),
    times its presence in the three frames. Steady motion and bounces below ``size`` cost nothing; a jump onto
    another object costs its excess squared, which a keypoint can also escape by vanishing."""
    b, t = z.shape[:2]
    x, y, g, _ = unpack(z.reshape(b * t, -1), num, appearance)
    xy, g = torch.stack([x, y], -1).view(b, t, num, 2), g.view(b, t, num)
    change = (xy[:, 2:] - 2.0 * xy[:, 1:-1] + xy[:, :-2]).square().sum(-1).add(1e-12).sqrt()
    return (g[:, 2:] * g[:, 1:-1] * g[:, :-2] * F.relu(change - size).square()).mean()


def appearance_loss(z: torch.Tensor, cell: int, channels: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The appearance term on the last ``channels`` of each ``cell``-wide latent vector of ``z``
    (B, T, cells * cell): summed over the cells (weighted by ``weights`` (B, T, cells) when given),
    they give each frame a code ``g`` (B, T, channels). ``g`` should not change within a window (its
    mean squared deviation from the window's mean) and should vary between windows (VICReg's variance
    hinge and covariance over the batch's frames). What stays the same over a clip yet differs between
    clips is what its objects look like, and the sum over cells lets each object's code ride in the
    cells where the object is, whichever they are. Weights that keep only the cells where something
    moves (:func:`moving_cells`, a weighted mean then) leave out the still parts of a scene (a screen
    that stands elsewhere in every clip), which would otherwise be the easiest thing to encode."""
    a = z.reshape(*z.shape[:2], -1, cell)[..., cell - channels :]  # (B, T, cells, channels)
    g = (a if weights is None else a * weights[..., None]).sum(2)  # (B, T, channels)
    slow = ((g - g.mean(1, keepdim=True)) ** 2).mean()
    var, cov = vicreg_terms(g.reshape(-1, channels))
    return slow + var + cov


def moving_cells(rgb: torch.Tensor, grid: int, threshold: int = 16) -> torch.Tensor:
    """``(B, T, grid * grid)``: for each frame of the windows ``rgb`` (B, T, 3, H, W) uint8, how many
    of each cell's pixels (cells row by row, as a latent map lists them) differ by more than
    ``threshold`` (of 255, in some channel) from the same pixel in some other frame of the window, as
    a share of all such pixels of the frame (0 everywhere in a frame where nothing moves). Shares,
    not counts: a frame's weights sum to 1, so how much moves (how fast) is not itself a code."""
    b, t = rgb.shape[:2]
    rgb = rgb.to(torch.int16)  # once: moving_pixels then finds it converted
    moving = torch.stack([moving_pixels(rgb, torch.full((b,), i, device=rgb.device), threshold) for i in range(t)], 1)
    counts = F.adaptive_avg_pool2d(moving, grid).reshape(b, t, grid * grid)
    return counts / counts.sum(-1, keepdim=True).clamp_min(1e-12)


def temporal_deviations(z: torch.Tensor, cell: int, channels: int) -> torch.Tensor:
    """Each latent's deviation from its window's mean, as rows of the first ``channels`` of each
    ``cell``-wide latent vector: ``z`` (B, T, cells * cell) gives (B * T * cells, channels). The
    channels left out may stay still within a window (what does not move, such as a ball's colour)."""
    zm = z.reshape(*z.shape[:2], -1, cell)[..., :channels]  # (B, T, cells, channels)
    return (zm - zm.mean(1, keepdim=True)).reshape(-1, channels)


def moving_pixels(rgb: torch.Tensor, pick: torch.Tensor, threshold: int = 16, reference: str = "window") -> torch.Tensor:
    """``(B, H, W)`` float mask of the pixels of frame ``pick[b]`` of each window ``rgb`` (B, T, 3, H, W)
    uint8 that belong to what moves: some channel differs by more than ``threshold`` (of 255) from the
    same pixel in some frame of the window (``reference="window"``: a moving thing's leading and trailing
    edges, and where it is in the other frames), or from the window's per-pixel median frame
    (``"median"``: the whole of each moving thing where it is in that frame, once the window is long
    enough for it to leave the pixels it covers)."""
    rgb = rgb.to(torch.int16)
    rows = torch.arange(rgb.shape[0], device=rgb.device)
    frame = rgb[rows, pick]  # (B, 3, H, W)
    if reference == "median":
        return ((frame - rgb.median(dim=1).values).abs().amax(1) > threshold).float()
    if reference != "window":
        raise ValueError(f"moving_pixels: reference must be 'window' or 'median', got {reference!r}")
    diff = (rgb - frame[:, None]).abs().amax(dim=(1, 2))  # over frames and channels
    return (diff > threshold).float()


def decoded_prediction_loss(decode, z: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, focus: float,
                            pick: torch.Tensor, threshold: float = 32 / 255) -> torch.Tensor:
    """A prediction error in pictures: a fixed decoder draws the predicted latent ``pred[b, pick[b]]`` and
    the target latent ``target[b, pick[b]]`` (latents ``(B, T, D)``, one step per window), and their
    squared difference is averaged with pixels weighted ``1 + focus`` where the target's picture differs
    from the current latent's ``z[b, pick[b]]`` by more than ``threshold`` (decoded pictures span
    [-1, 1]: 32/255 there is 16 of 255 levels), ``1`` elsewhere. No image is read, so it works on stored
    latents. The decoder must not learn from this term (it could flatten every picture): the caller
    keeps its weights fixed, while the gradient reaches ``pred`` through it."""
    rows = torch.arange(pred.shape[0], device=pred.device)
    pick = pick.to(pred.device)
    with torch.no_grad():
        goal, now = decode(target[rows, pick]), decode(z[rows, pick])  # (B, 3, H, W)
        weight = 1.0 + focus * ((goal - now).abs().amax(1, keepdim=True) > threshold).float()
    err = (decode(pred[rows, pick]) - goal) ** 2
    return (weight * err).sum() / (weight.sum() * err.shape[1])


def rollout_context(cfg, generator: torch.Generator) -> int:
    """How many latents this step's rollout starts from: ``cfg.rollout_context``, or a uniform draw
    from ``cfg.rollout_context_min`` up to it when that is set."""
    lo, hi = cfg.rollout_context_min, cfg.rollout_context
    if lo < 1 or lo >= hi:
        return hi
    return int(torch.randint(lo, hi + 1, (1,), generator=generator))


def predictor_learns(cfg) -> bool:
    """Whether some term learns from the predictor's output: with ``pred_weight=0`` and no rollout,
    state readout or decoded prediction term, training is an autoencoder stage and the predictor is
    neither run nor trained."""
    rolling = cfg.rollout_weight > 0 and cfg.rollout_steps >= 2
    return (cfg.objective == "pixel" or cfg.pred_weight > 0 or rolling or cfg.state_weight > 0
            or cfg.pred_decoded_weight > 0)


def _predictor_terms(model, z, target, actions, cfg, terms: dict, generator: torch.Generator, state=None) -> dict:
    """The terms the predictor and the heads on the latent learn from: ``pred``, ``pred_decoded``, ``rollout``,
    ``inverse``, ``state_read`` and ``state``."""
    b, t = z.shape[:2]
    # random draws in a fixed order (the decoded frame of each window, then the rollout's context)
    decoded_pick = torch.randint(0, t - 1, (b,), generator=generator) if cfg.pred_decoded_weight > 0 else None
    c = rollout_context(cfg, generator)
    k = min(cfg.rollout_steps, t - c)
    rolling = k >= 2 and cfg.rollout_weight > 0
    if rolling:  # one pass where the predictor is recurrent (the rollout goes on from the teacher-forced state)
        pred, imagined = model.predict_and_rollout(z[:, :-1], actions[:, :-1], c, k)
    elif predictor_learns(cfg):
        pred = model.predict(z[:, :-1], actions[:, :-1])
    else:  # an autoencoder stage: the predictor is not run
        pred = None

    def weigh(first: int, n: int) -> torch.Tensor | None:
        """presence_change_weight's weights of the target frames first .. first + n - 1 (object latents only)."""
        if cfg.presence_change_weight == 1.0:
            return None
        return presence_change_weights(target[:, first - 1 : first - 1 + n], target[:, first : first + n],
                                       model.cfg.objects, cfg.presence_change_weight)

    if pred is not None:
        terms["pred"] = prediction_loss(pred, target[:, 1:], weigh(1, t - 1), cfg.prediction_error)
    read = _state_terms(model, target, pred, state, terms, cfg.state_scale) if cfg.state_weight > 0 else None
    if cfg.pred_decoded_weight > 0:
        terms["pred_decoded"] = decoded_prediction_loss(model.decode, z[:, :-1], pred, target[:, 1:], cfg.recon_focus,
                                                        decoded_pick)
    if rolling:
        if imagined.ndim == 4:  # several imagined futures: scored by the nearest (see nearest_future_loss)
            terms["rollout"], imagined = nearest_future_loss(imagined, target[:, c : c + k], weigh(c, k), cfg.prediction_error)
        else:
            terms["rollout"] = prediction_loss(imagined, target[:, c : c + k], weigh(c, k), cfg.prediction_error)
        if read is not None:  # the rollout's latents read as the states that came, as the one-step ones do
            terms["state"] = 0.5 * (terms["state"] + read(imagined, c))
    if cfg.inverse_weight > 0:
        if model.inverse is None:
            raise ValueError("inverse_weight > 0 needs a model built with an inverse-dynamics head")
        # the action between z_t and z_t+1, read from the last n latents up to z_t+1 (n - 1 before it)
        n = model.cfg.inverse_frames
        if t < n:
            raise ValueError(f"the inverse-dynamics head reads {n} latents but windows hold {t}; raise window")
        guess = model.inverse(torch.cat([z[:, i : t - n + 1 + i] for i in range(n)], dim=-1))
        terms["inverse"] = F.mse_loss(guess, actions[:, n - 2 : t - 1].float())
    return terms


def _state_terms(model, target: torch.Tensor, pred: torch.Tensor, state, terms: dict, scale: str = "state"):
    """``state_read`` (the head learns to read the target latents; no gradient into them, so the
    representation is left as it is) and ``state`` (the one-step predictions read by the head held
    fixed, against the states that came). Returns that error as a function of predicted latents of
    frames ``first``, ``first + 1``, ..., for the rollout. With ``scale`` 'change' the predictions' errors
    are measured in units of each feature's change over one model step instead of its spread."""
    if model.state_head is None or state is None:
        raise ValueError("state_weight > 0 needs a model built with a state-readout head and windows with states")
    head = model.state_head
    feats = head.features(state)  # (B, T, F)
    terms["state_read"] = F.mse_loss(head(target.detach()), feats)
    fixed = {k: v.detach() for k, v in head.named_parameters()}
    weight = (head.std / head.change_std).square() if scale == "change" else None

    def read(latents: torch.Tensor, first: int) -> torch.Tensor:
        out = torch.func.functional_call(head, fixed, (latents,))
        err = (out - feats[:, first : first + latents.shape[1]]).square()
        return (err * weight).mean() if weight is not None else err.mean()

    terms["state"] = read(pred, 1)
    return read


class WorldModelObjective(torch.nn.Module):
    """The model plus its training objective as one module whose ``forward`` returns the loss terms,
    so that DDP (and torch.compile) see a single forward per step."""

    def __init__(self, model, cfg, target_encoder=None):
        super().__init__()
        self.model, self.cfg, self.target_encoder = model, cfg, target_encoder

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator):
        return world_model_losses(self.model, batch, self.cfg, generator, self.target_encoder)


def loss_weights(cfg) -> dict[str, float]:
    """The weight of every term :func:`world_model_losses` can return."""
    return {"pred": cfg.pred_weight, "rollout": cfg.rollout_weight, "sigreg": cfg.sigreg_weight,
            "vic_var": cfg.vicreg_var_weight, "vic_cov": cfg.vicreg_cov_weight,
            "inverse": cfg.inverse_weight, "temporal": cfg.temporal_weight, "recon": cfg.recon_weight,
            "appearance": cfg.appearance_weight, "pred_decoded": cfg.pred_decoded_weight, "pixel": 1.0,
            "state_read": 1.0, "state": cfg.state_weight,
            "presence": cfg.presence_weight, "jump": cfg.jump_weight, "occlude": cfg.occlude_weight}
