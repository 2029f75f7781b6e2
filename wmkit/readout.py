"""What the state readout of ``state_weight`` reads, and its statistics over the training data.

The head itself (:class:`~wmkit.models.world_model.StateHead`) is part of the model; this module
decides, from the train config and the dataset, which recorded variables it learns and which of
them are angles, and standardises its targets over the training episodes.
"""

from __future__ import annotations

import numpy as np
import torch

from .config import TrainConfig
from .data.store import EpisodeStore
from .data.windows import WindowDataset
from .envs import is_world, make_world
from .errors import DatasetError, WmkitError


def state_readout(tcfg: TrainConfig, store: EpisodeStore) -> tuple[tuple, tuple]:
    """The state variables (and which of them are angles) the readout head of ``state_weight`` learns:
    ``state_vars`` or every variable ``store`` records; angles as the built-in world names them."""
    if tcfg.state_weight <= 0:
        return (), ()
    recorded = list(store.meta.get("state_names") or [])
    if not store.has_state or not recorded:
        raise DatasetError(f"state_weight={tcfg.state_weight} learns to read the recorded state, but {store.path} records "
                           f"no states; collect data from a built-in world (`wmkit collect --env WORLD`), or set state_weight=0")
    names = tuple(v.strip() for v in tcfg.state_vars.split(",") if v.strip()) or tuple(recorded)
    unknown = [n for n in names if n not in recorded]
    if unknown or len(set(names)) != len(names):
        raise WmkitError(f"train config 'state_vars' = {tcfg.state_vars!r}: "
                         + (f"{unknown} are not recorded in {store.path}" if unknown else "a variable is named twice")
                         + f"; it records {recorded}")
    env = store.meta.get("env")
    # a built-in world names its angles in its spec (a one-copy world is made to read it)
    spec_angles = make_world(env, 1, 16).spec.angle_names if is_world(env) else ()
    return names, tuple(n for n in names if n in spec_angles)


def fit_state_statistics(head, store: EpisodeStore, train_set: WindowDataset) -> None:
    """Point the readout ``head`` at its variables' columns of ``store``'s state, standardise its
    features over the training episodes' states and measure their changes over one model step."""
    recorded = list(store.meta["state_names"])
    ep = store.episodes
    rows = [store.read(int(ep["chunk"][r]), "state", int(ep["start"][r]), int(ep["start"][r] + ep["length"][r]))
            for r in train_set.episode_rows]
    head.fit_statistics([recorded.index(n) for n in head.names], torch.as_tensor(np.concatenate(rows)))
    head.fit_change([torch.as_tensor(r) for r in rows], train_set.skip)
