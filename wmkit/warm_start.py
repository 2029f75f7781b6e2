"""Starting a run from a trained one (``init_from``), and what stays fixed while it trains.

``freeze_encoder`` keeps the representation (encoder and projector) exactly as trained, so only the
predictor and heads learn; those may then differ from the source run's (:data:`PREDICTOR_FIELDS`).
A predictor whose weights keep their names and shapes (a recurrent one read over a longer history)
continues from the source's weights; otherwise it starts afresh.
``pred_decoded_weight`` draws predictions with the source run's pixel decoder, which is copied and
kept fixed too. Fixed parts stay in evaluation mode (BatchNorm statistics frozen).
"""

from __future__ import annotations

import dataclasses

import torch

from .config import TrainConfig
from .errors import WmkitError
from .log import logger
from .models import WorldModel


def set_train_mode(model: WorldModel, cfg: TrainConfig) -> None:
    """Training mode, except the fixed parts (a frozen encoder and projector, the decoder that
    pred_decoded_weight draws with), which stay in evaluation mode."""
    model.train()
    if cfg.freeze_encoder:
        model.encoder.eval()
        model.projector.eval()
    if cfg.pred_decoded_weight > 0:
        model.decoder.eval()


# model settings that shape the predictor and heads, not the latent: they may change under freeze_encoder
PREDICTOR_FIELDS = frozenset({"predictor", "predictor_width", "predictor_depth", "predictor_heads", "history",
                              "mlp_history", "dropout", "predictor_deltas", "predictor_coords", "inverse_frames",
                              "inverse_head", "decoder", "state_names", "state_angles", "object_pairs",
                              "object_motion", "object_futures"})


# predictor settings under which weights of the same names and shapes would mean something else
# (attention heads regrouped, other inputs): such a predictor starts afresh
REGROUPING_FIELDS = frozenset({"predictor", "predictor_heads", "predictor_deltas", "predictor_coords", "object_pairs",
                               "object_motion"})


# encoder settings that add a part starting at zero (the model computes what it did without it), by the name of the
# encoder's part: a run may turn them on over a source trained without them, and continues from its weights
GROWING_FIELDS = {"object_offsets": "offset"}


def init_weights(model: WorldModel, cfg: TrainConfig) -> None:
    """``init_from`` and ``freeze_encoder``: start from a trained model, optionally freezing its
    representation so that only the predictor (and heads) learn."""
    if cfg.init_from:
        source = WorldModel.from_checkpoint(cfg.init_from)
        differ = {k: (v, getattr(model.cfg, k)) for k, v in dataclasses.asdict(source.cfg).items() if getattr(model.cfg, k) != v}
        # a frozen representation may get a new predictor (and heads): only what makes the latent must match
        growing = {k for k, (a, b) in differ.items() if k in GROWING_FIELDS and not a and b}
        blocking = {k: v for k, v in differ.items()
                    if not (cfg.freeze_encoder and k in PREDICTOR_FIELDS) and k not in growing}
        if blocking:
            raise WmkitError(f"init_from={cfg.init_from}: its model config differs from this run's in "
                             + ", ".join(f"{k} ({a!r} there, {b!r} here)" for k, (a, b) in blocking.items())
                             + "; pass the same model.* settings"
                             + ("" if cfg.freeze_encoder or not set(blocking) <= PREDICTOR_FIELDS else
                                " (with freeze_encoder=true only the encoder's settings must match: the predictor may differ)"))
        if cfg.pred_decoded_weight > 0 and source.decoder is None:
            raise WmkitError(f"pred_decoded_weight={cfg.pred_decoded_weight} draws predictions with init_from's pixel decoder, "
                             f"but {cfg.init_from} has none: start from a run trained with recon_weight > 0")
        if differ:  # a new predictor on the frozen encoder: copy the representation only (and the decoder it is drawn with)
            parts = ("encoder", "projector") + (("decoder",) if model.decoder is not None and source.decoder is not None else ())
            # a predictor whose weights have the same names and shapes (a recurrent one read over a longer history,
            # another dropout) continues from the source's weights instead of starting afresh
            if _same_shapes(model.predictor, source.predictor) and not set(differ) & REGROUPING_FIELDS:
                parts += ("predictor",)
            for part in parts:  # a growing setting's new part keeps its zero start (the only keys the source lacks)
                new = tuple(f"{GROWING_FIELDS[k]}." for k in growing) if part == "encoder" else ()
                _load(getattr(model, part), getattr(source, part).state_dict(), new)
            fresh = "the heads start afresh" if "predictor" in parts else "the predictor and heads start afresh"
            logger.info(f"init_from={cfg.init_from}: {', '.join(parts)} copied; {fresh} "
                        f"(the model settings differ in {', '.join(sorted(differ))})")
        else:
            model.load_state_dict(source.state_dict())
    if cfg.freeze_encoder:
        if not cfg.init_from:
            raise WmkitError("freeze_encoder=true needs init_from=RUN: freezing a random encoder trains a predictor on noise")
        model.encoder.requires_grad_(False)
        model.projector.requires_grad_(False)
    if cfg.pred_decoded_weight > 0:
        model.decoder.requires_grad_(False)
    set_train_mode(model, cfg)


def _load(module: torch.nn.Module, state: dict, new: tuple[str, ...]) -> None:
    """Load ``state`` into ``module``; weights under the prefixes ``new`` (parts a growing setting adds) may be
    missing from it and keep their zero start, and nothing else may be."""
    result = module.load_state_dict(state, strict=not new)
    wrong = result.unexpected_keys + [k for k in result.missing_keys if not k.startswith(new)]
    if wrong:
        raise WmkitError(f"init_from: the source's weights do not match this model's in {wrong}")


def _same_shapes(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(sa[k].shape == sb[k].shape for k in sa)
