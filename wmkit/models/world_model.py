"""The action-conditioned world model: encoder -> projector -> latent ``z``; predictor(z, a) -> next z.

    z = model.encode(obs)                   # (B, T, D)
    z_next = model.predict(z, actions)      # (B, T, D): the latent after each (z_t, a_t), causal
    z_future = model.rollout(z, actions)    # (B, H, D): open loop from the last latent of z

The projector ends in BatchNorm: SIGReg pushes the latents toward an isotropic Gaussian and a
BatchNorm projector lets it (a LayerNorm there blocks it, as LeWM reports). Its evaluation
statistics are set exactly from reference observations by :meth:`WorldModel.calibrate` (training
does this before every validation and checkpoint), so the model encodes alike in both modes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import WmkitError
from .encoders import ConvEncoder, MapDecoder, PixelDecoder, ViTEncoder
from .norm import GlobalBatchNorm1d, calibrate
from .objects import BlobDecoder, ObjectEncoder, ObjectPredictor
from .predictors import ConvGRUPredictor, ConvPredictor, GRUPredictor, MLPPredictor, TransformerPredictor
from .state_head import StateHead


def _repeat_state(state, times: int):
    """A recurrent predictor's state (a tensor, or a tuple of them, batch first) with each window's repeated ``times``."""
    if isinstance(state, tuple):
        return tuple(_repeat_state(s, times) for s in state)
    return state.repeat_interleave(times, 0)


def _check(name: str, x: torch.Tensor, ndim: tuple[int, ...], what: str) -> None:
    if x.ndim not in ndim:
        raise WmkitError(f"{name} must be {what}, got shape {tuple(x.shape)}")


class WorldModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        keys = tuple(cfg.obs_keys)
        if "rgb" not in keys:
            raise WmkitError(f"model obs_keys must include 'rgb', got {keys}")
        feat = max(cfg.embed_dim * 2, 128)
        if cfg.grid < 0:
            raise WmkitError(f"model.grid must be >= 0 (0 = one latent vector per frame), got {cfg.grid}")
        if cfg.grid and cfg.encoder != "cnn":
            raise WmkitError(f"model.grid (per-region latents) works with the cnn encoder, not {cfg.encoder!r}")
        if cfg.encoder == "cnn":
            self.encoder = ConvEncoder(cfg.image_size, cfg.channels, feat, keys, cfg.proprio_dim, cfg.keypoints, cfg.grid)
        elif cfg.encoder == "vit":
            self.encoder = ViTEncoder(cfg.image_size, cfg.patch_size, cfg.channels * 4, cfg.vit_depth, feat, keys, cfg.proprio_dim)
        elif cfg.encoder == "objects":
            self.encoder = ObjectEncoder(cfg.image_size, cfg.objects, cfg.object_appearance, keys, cfg.channels,
                                         offsets=cfg.object_offsets)
        else:
            raise WmkitError(f"unknown encoder {cfg.encoder!r}; expected 'cnn', 'vit' or 'objects'")
        if cfg.keypoints and cfg.encoder != "cnn":
            raise WmkitError(f"model.keypoints works with the cnn encoder, not {cfg.encoder!r}; set model.keypoints=0")
        if (cfg.encoder == "objects") != (cfg.predictor == "objects"):
            raise WmkitError(f"model.encoder=objects and model.predictor=objects go together (an object latent is a set of "
                             f"keypoint tokens), got encoder={cfg.encoder!r} and predictor={cfg.predictor!r}")
        if cfg.object_pairs != "offset" and cfg.predictor != "objects":
            raise WmkitError(f"model.object_pairs={cfg.object_pairs!r} sets the objects predictor's pair message, but "
                             f"model.predictor={cfg.predictor!r}; drop it or use model.predictor=objects")
        if cfg.object_futures != 1 and cfg.predictor != "objects":
            raise WmkitError(f"model.object_futures={cfg.object_futures} lets the objects predictor imagine several futures, "
                             f"but model.predictor={cfg.predictor!r}; drop it or use model.predictor=objects")
        if cfg.object_motion and cfg.predictor != "objects":
            raise WmkitError(f"model.object_motion=true gives the objects predictor its keypoints' motion, but "
                             f"model.predictor={cfg.predictor!r}; drop it or use model.predictor=objects")
        # the projector maps each cell's feature alike; the BatchNorm's statistics pool over cells.
        # An object latent is used as the encoder gives it: its numbers are positions and presences
        self.projector = (nn.Sequential() if cfg.encoder == "objects" else
                          nn.Sequential(nn.GELU(), nn.Linear(feat, cfg.embed_dim), GlobalBatchNorm1d(cfg.embed_dim)))
        d, a, w = self.latent_dim, cfg.action_dim, cfg.predictor_width
        if cfg.predictor in ("conv", "convgru") and not cfg.grid:
            raise WmkitError(f"model.predictor={cfg.predictor} predicts a latent map; set model.grid (e.g. 8) too")
        if cfg.predictor == "conv":
            self.predictor = ConvPredictor(cfg.embed_dim, cfg.grid, a, w, cfg.predictor_depth, cfg.history,
                                           coords=cfg.predictor_coords)
        elif cfg.predictor_coords:
            raise WmkitError(f"model.predictor_coords works with the conv predictor, not {cfg.predictor!r}")
        elif cfg.predictor == "transformer":
            self.predictor = TransformerPredictor(d, a, w, cfg.predictor_depth, cfg.predictor_heads, cfg.history, cfg.dropout,
                                                  deltas=cfg.predictor_deltas)
        elif cfg.predictor_deltas:
            raise WmkitError(f"model.predictor_deltas works with the transformer predictor, not {cfg.predictor!r}")
        elif cfg.predictor == "mlp":
            if cfg.mlp_history < 1:
                raise WmkitError(f"model.mlp_history must be >= 1 latent, got {cfg.mlp_history}")
            self.predictor = MLPPredictor(d, a, w, cfg.predictor_depth, cfg.dropout, cfg.mlp_history)
        elif cfg.predictor == "gru":
            self.predictor = GRUPredictor(d, a, w, cfg.predictor_depth, cfg.history, cfg.dropout)
        elif cfg.predictor == "convgru":
            self.predictor = ConvGRUPredictor(cfg.embed_dim, cfg.grid, a, w, cfg.predictor_depth, cfg.history)
        elif cfg.predictor == "objects":
            self.predictor = ObjectPredictor(cfg.objects, cfg.object_appearance, a, w, cfg.predictor_heads, cfg.history,
                                            cfg.object_pairs, cfg.object_motion, cfg.object_futures)
        else:
            raise WmkitError(f"unknown predictor {cfg.predictor!r}; expected 'transformer', 'mlp', 'gru', 'conv', 'convgru' or 'objects'")
        if not cfg.decoder:
            self.decoder = None
        elif cfg.encoder == "objects":  # blobs at the keypoints
            self.decoder = BlobDecoder(cfg.image_size, cfg.objects, cfg.object_appearance)
        elif cfg.grid:  # a latent map: each cell decodes its own region
            self.decoder = MapDecoder(cfg.image_size, cfg.grid, cfg.embed_dim)
        else:
            self.decoder = PixelDecoder(cfg.image_size, cfg.channels, d)
        # inverse dynamics (z_t, z_t+1) -> a_t, or with inverse_frames=3 (z_t-1, z_t, z_t+1) -> a_t:
        # an optional training signal (PLDM) that keeps action-relevant information in the latent
        if cfg.inverse_frames < 2:
            raise WmkitError(f"model.inverse_frames must be >= 2 (the latents before and after the action), got {cfg.inverse_frames}")
        self.inverse = (nn.Sequential(nn.Linear(cfg.inverse_frames * d, w), nn.GELU(), nn.Linear(w, a))
                        if cfg.inverse_head and a > 0 else None)
        self.state_head = StateHead(d, cfg.state_names, cfg.state_angles, grid=cfg.grid) if cfg.state_names else None

    def read_state(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``(..., D)`` -> the state variables ``model.cfg.state_names`` read from them ``(..., S)``,
        in the data's units (models trained with ``state_weight > 0`` only)."""
        if self.state_head is None:
            raise WmkitError("this model has no state-readout head (train one with state_weight > 0 on data that records states)")
        return self.state_head.to_state(self.state_head(z))

    @property
    def latent_dim(self) -> int:
        """Numbers per frame's latent: ``embed_dim``, ``grid * grid * embed_dim`` for a latent map, or
        ``objects * (3 + object_appearance)`` for an object latent."""
        if self.cfg.encoder == "objects":
            return self.cfg.objects * (3 + self.cfg.object_appearance)
        return self.cfg.embed_dim * max(self.cfg.grid, 1) ** 2

    @property
    def history(self) -> int:
        return self.predictor.history

    def _encoder_features(self, obs) -> tuple[torch.Tensor, torch.Size]:
        """Checked observations -> the encoder's features ``(N, F)`` and the leading shape ``(B[, T])``."""
        if isinstance(obs, torch.Tensor):
            obs = {"rgb": obs}
        missing = [k for k in self.cfg.obs_keys if k not in obs]
        if missing:
            raise WmkitError(f"the model needs observation keys {list(self.cfg.obs_keys)}; missing {missing}")
        rgb = obs["rgb"]
        _check("obs['rgb']", rgb, (4, 5), "(B, 3, H, W) or (B, T, 3, H, W) uint8")
        size = self.cfg.image_size
        if rgb.shape[-3:] != (3, size, size):
            raise WmkitError(f"the model takes (3, {size}, {size}) frames, got {tuple(rgb.shape[-3:])} "
                             f"(images must be channels-first, {size}x{size}, RGB)")
        lead = rgb.shape[:-3]
        flat = {k: obs[k].reshape(-1, *obs[k].shape[len(lead):]) for k in self.cfg.obs_keys}
        return self.encoder(flat), lead

    def encode(self, obs) -> torch.Tensor:
        """Observations -> latents. ``obs`` is a dict (``rgb`` uint8 ``(B, T, 3, H, W)`` or
        ``(B, 3, H, W)``, plus ``depth``/``proprio`` if the model uses them) or the rgb tensor alone.
        Returns ``(B, T, D)`` or ``(B, D)`` to match."""
        feature, lead = self._encoder_features(obs)  # (N, F) or, with a grid, (N, G*G, F)
        return self.projector(feature.reshape(-1, feature.shape[-1])).view(*lead, -1)  # lead + (D,)

    @torch.no_grad()
    def calibrate(self, observations) -> None:
        """Set the projector BatchNorm's evaluation statistics to the exact mean and variance of its
        input over ``observations`` (an iterable of observation dicts as :meth:`encode` takes, or
        one dict), pooled over every process. Afterwards evaluation mode encodes these frames as
        training mode encodes them in one batch."""
        if not len(self.projector):  # an object latent has no statistics to set
            return
        if isinstance(observations, dict):
            observations = [observations]
        features = [self.projector[:-1](self._encoder_features(obs)[0]) for obs in observations]  # per cell with a grid
        if not features:
            raise WmkitError("calibrate needs at least one batch of reference observations")
        calibrate(self.projector[-1], features)

    def predict(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Next latents after each step: ``z`` (B, T, D), ``actions`` (B, T, A) -> (B, T, D).
        Output ``t`` sees only ``z[:, :t+1]`` and ``actions[:, :t+1]``."""
        self._check_window(z, actions)
        return self.predictor(z, actions)

    def _check_window(self, z: torch.Tensor, actions: torch.Tensor) -> None:
        _check("z", z, (3,), "(B, T, D)")
        if actions.shape[:2] != z.shape[:2] or actions.shape[-1] != self.cfg.action_dim:
            raise WmkitError(f"actions must be (B, T, A) = ({z.shape[0]}, {z.shape[1]}, {self.cfg.action_dim}) "
                             f"to match z {tuple(z.shape)}, got {tuple(actions.shape)}")
        if self.cfg.predictor not in ("mlp", "conv") and z.shape[1] > self.history:  # those two slide a window
            raise WmkitError(f"the predictor attends to at most history={self.history} steps, got {z.shape[1]}; "
                             f"pass the last {self.history} latents, or use rollout()")

    @property
    def futures(self) -> int:
        """How many futures the predictor imagines from one context (``model.object_futures``; 1 for most)."""
        return getattr(self.predictor, "futures", 1)

    def rollout(self, z: torch.Tensor, actions: torch.Tensor, past_actions: torch.Tensor | None = None,
                futures: bool = False) -> torch.Tensor:
        """Open-loop imagination. ``z``: context latents (B, D) or (B, T0, D); ``past_actions``:
        the (B, T0-1, A) actions between them (zeros if omitted); ``actions``: (B, H, A) to apply
        from the last context latent. Returns the H imagined latents (B, H, D). A predictor that imagines
        several futures (:attr:`futures` > 1) returns their mean, or with ``futures=True`` each of them,
        (B, F, H, D)."""
        if z.ndim == 2:
            z = z[:, None]
        b, t0, _ = z.shape
        if past_actions is None:
            past_actions = actions.new_zeros(b, t0 - 1, actions.shape[-1])
        f = self.futures
        if getattr(self.predictor, "step", None) is not None and t0 + actions.shape[1] - 1 <= self.history:
            # a recurrent predictor whose window never outgrows its history: carry its state instead
            # of re-reading the window at every step (the same numbers, one step of work per latent)
            state, steps = None, list(past_actions.unbind(1)) + [actions[:, 0]]
            for i in range(t0):
                nxt, state = self.predictor.step(z[:, i], steps[i], state)
            imagined = self._imagine(nxt, state, actions[:, 1:])
            if f == 1:
                return imagined[:, None] if futures else imagined
            imagined = imagined.view(b, f, *imagined.shape[1:])
            return imagined if futures else imagined.mean(1)
        if f > 1:
            raise WmkitError(f"a predictor that imagines {f} futures rolls out only within its history of {self.history} "
                             f"latents, got {t0} of context and {actions.shape[1]} steps; shorten one of them")
        zs, acts = list(z.unbind(1)), list(past_actions.unbind(1))
        out = []
        k = self.history
        for h in range(actions.shape[1]):
            acts.append(actions[:, h])
            z_win, a_win = torch.stack(zs[-k:], 1), torch.stack(acts[-k:], 1)
            nxt = self.predictor(z_win, a_win)[:, -1]
            zs.append(nxt)
            out.append(nxt)
        imagined = torch.stack(out, 1)
        return imagined[:, None] if futures else imagined

    def _imagine(self, first: torch.Tensor, state, actions: torch.Tensor) -> torch.Tensor:
        """The open-loop steps of a recurrent predictor after its first prediction ``first`` (B, D) from
        ``state``, one per action of ``actions`` (B, H - 1, A) -> (B, H, D); with :attr:`futures` = F > 1 each
        window continues F ways, each conditioned on its future's index -> (B * F, H, D), window-major. The
        first prediction, from the context alone, is the same in all."""
        f = self.futures
        which = None
        if f > 1:
            first = first.repeat_interleave(f, 0)
            state = _repeat_state(state, f)
            actions = actions.repeat_interleave(f, 0)
            which = torch.arange(f, device=first.device).repeat(len(first) // f)
        nxt, out = first, [first]
        for h in range(actions.shape[1]):
            nxt, state = self.predictor.step(nxt, actions[:, h], state, which) if f > 1 else \
                self.predictor.step(nxt, actions[:, h], state)
            out.append(nxt)
        return torch.stack(out, 1)

    def predict_and_rollout(self, z: torch.Tensor, actions: torch.Tensor, context: int, steps: int):
        """What training asks of the predictor on one window, in one pass where it can:
        ``predict(z, actions)`` and ``rollout(z[:, :context], actions[:, context - 1 : context - 1 + steps],
        past_actions=actions[:, :context - 1])``, as ``(predictions (B, T, D), imagined (B, steps, D))``;
        a predictor that imagines F > 1 futures gives each, ``imagined`` (B, F, steps, D).

        A recurrent predictor reaches the same state at ``context`` in both, and its teacher-forced
        prediction there is the rollout's first latent; so the window is run in two parts, and the
        rollout goes on from the state between them: ``context + 1`` fewer steps of work (1.56x faster
        steps for the balls recipe, BENCHMARKS.md), with the same numbers."""
        self._check_window(z, actions)
        t = z.shape[1]
        if not 1 <= context < t or not 1 <= steps <= t - context + 1:
            raise WmkitError(f"a rollout of {steps} steps from {context} latents needs 1 <= context < T and "
                             f"steps <= T - context + 1 for a window of T = {t}")
        run = getattr(self.predictor, "run", None)
        if run is None or getattr(self.predictor, "step", None) is None or context + steps - 1 > self.history:
            if self.futures > 1:
                raise WmkitError(f"a predictor that imagines {self.futures} futures rolls out only within its history of "
                                 f"{self.history} latents; lower rollout_context or rollout_steps")
            return self._predict_then_rollout(z, actions, context, steps)
        first, state = run(z[:, :context], actions[:, :context])
        rest = run(z[:, context:], actions[:, context:], state)[0]
        imagined = self._imagine(first[:, -1], state, actions[:, context : context - 1 + steps])
        if self.futures > 1:
            imagined = imagined.view(len(z), self.futures, *imagined.shape[1:])
        return torch.cat([first, rest], 1), imagined

    def _predict_then_rollout(self, z: torch.Tensor, actions: torch.Tensor, context: int, steps: int):
        """:meth:`predict_and_rollout` as two separate calls (any predictor; the rollout runs its context again)."""
        return self.predict(z, actions), self.rollout(z[:, :context], actions[:, context - 1 : context - 1 + steps],
                                                      past_actions=actions[:, : context - 1])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (..., D) -> frames (..., 3, H, W) in [-1, 1] (models with a pixel decoder only)."""
        if self.decoder is None:
            raise WmkitError("this model has no pixel decoder (it was trained with neither objective=pixel nor recon_weight > 0)")
        lead = z.shape[:-1]
        x = self.decoder(z.reshape(-1, z.shape[-1]))
        return x.view(*lead, *x.shape[1:])

    @property
    def frame_skip(self) -> int:
        """Env steps per model step, as the model was trained (1 for a model not loaded from a checkpoint)."""
        meta = getattr(self, "checkpoint_meta", None) or {}
        return int(meta.get("train_config", {}).get("frame_skip", 1))

    @classmethod
    def from_checkpoint(cls, path, map_location="cpu") -> "WorldModel":
        """Rebuild a trained model from a run folder or a checkpoint folder alone (no pickle)."""
        from ..checkpoint import CheckpointError, load_checkpoint

        ckpt = load_checkpoint(path, map_location=map_location)
        if "model_config" not in ckpt.meta:
            raise CheckpointError(f"{ckpt.path} has no model_config in trainer.json; it was not written by wmkit train")
        fields = {f.name for f in dataclasses.fields(ModelConfig)}
        raw = ckpt.meta["model_config"]
        unknown = sorted(set(raw) - fields)
        if unknown:
            raise CheckpointError(f"{ckpt.path}: model_config has fields {unknown} this wmkit does not know; upgrade wmkit")
        cfg = ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        model = cls(cfg)
        try:
            model.load_state_dict(ckpt.model_state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{ckpt.path}: the weights do not fit the model its config describes ({exc})") from exc
        model.eval()
        model.checkpoint_path = Path(ckpt.path)
        model.checkpoint_meta = ckpt.meta
        return model


def model_size(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
