"""A goal cost read through the model's state-readout head: the world's own goal distance between
the state read from an imagined latent and the state read from the goal's latent.

A model trained with ``state_weight > 0`` carries a head that reads named state variables (push-t's
block pose, two-room's position) from a latent. Planning with ``metric="state"`` scores each imagined
latent by the quantity the world's success test thresholds (push-t: the block's position and angle
error in units of their tolerances), so nothing in the picture the test does not ask about (where
the pusher ends) can make a plan look good. Planning still sees images only: the goal image is
encoded and read like any frame. It needs a built-in world's data (which records states), and a
head that reads every variable the world's goal distance uses.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import WmkitError


class StateGoalDistance:
    """``(z, goal) -> distance`` (broadcast over leading axes, as the learned distance is): the
    world's goal distance between the states ``model.read_state`` reads from both latents."""

    def __init__(self, model):
        from ..envs import is_world, make_world, world_class
        from .agent import constructor_params

        if getattr(model, "state_head", None) is None:
            raise WmkitError("metric 'state' plans with the model's state-readout head, and this model has none: train it "
                             "with state_weight > 0 (e.g. `wmkit train ... state_weight=1.0 state_vars=block_x,block_y,block_angle`)")
        data = (getattr(model, "checkpoint_meta", None) or {}).get("dataset") or {}
        env, recorded = data.get("env"), list(data.get("state_names") or [])
        if not is_world(env) or not recorded:
            raise WmkitError(f"metric 'state' scores read-out states with a built-in world's goal distance, but the model was "
                             f"trained on data from {env!r}; use --metric l2 or learned")
        self.model, self.names = model, list(model.state_head.names)
        self.columns = [recorded.index(n) for n in self.names]
        self.world = make_world(env, 1, model.cfg.image_size, **constructor_params(world_class(env), data.get("world_params") or {}))
        self.width = len(recorded)
        self._check_reads_what_the_goal_needs(recorded)

    def _check_reads_what_the_goal_needs(self, recorded) -> None:
        """The world's goal distance must not change with a variable the head does not read."""
        rng = np.random.default_rng(0)
        state, goal = rng.standard_normal((2, 64, self.width)) * 50.0
        unread = [i for i in range(self.width) if i not in self.columns]
        for i in unread:
            moved, moved_goal = state.copy(), goal.copy()
            moved[:, i] += 37.0
            moved_goal[:, i] -= 23.0
            before = self.world.goal_distance(state, self.world.goal_from_state(goal))
            after = self.world.goal_distance(moved, self.world.goal_from_state(moved_goal))
            if not np.allclose(before, after):
                raise WmkitError(f"metric 'state': the {self.world.spec.name} goal distance depends on '{recorded[i]}', which the "
                                 f"model's readout does not read (it reads {self.names}); train with state_vars including it")

    def full_state(self, read: torch.Tensor) -> np.ndarray:
        """Read variables ``(N, len(names))`` -> the data's state layout ``(N, S)`` (the rest 0)."""
        out = np.zeros((len(read), self.width))
        out[:, self.columns] = read.detach().double().cpu().numpy()
        return out

    @torch.no_grad()
    def __call__(self, z: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        state, target = torch.broadcast_tensors(self.model.read_state(z), self.model.read_state(goal))
        lead = state.shape[:-1]
        s = self.full_state(state.reshape(-1, state.shape[-1]))
        g = self.world.goal_from_state(self.full_state(target.reshape(-1, target.shape[-1])))
        return torch.as_tensor(self.world.goal_distance(s, g), dtype=torch.float32, device=z.device).view(lead)
