"""Agents that act in a batched world: the MPC agent (world model + planner + latent cost), and the
two baselines every planning evaluation runs beside it — a random policy and an oracle that plans
with the true simulator (the ceiling for the planner and budget used).

Every agent has ``reset(world, obs)`` and ``act(world, obs) -> (B, A)`` env actions. The MPC agent
uses only the observation and the goal *image*; the oracle reads the simulator's state. A fourth,
diagnostic agent searches the simulator like the oracle but scores with the model's latent cost.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..errors import WmkitError
from .costs import REDUCTIONS, CostConfig, latent_cost, model_cost, reduce_horizon
from .planners import PLANNERS, search_held, shift_plan


def _planner(name: str):
    if name not in PLANNERS:
        raise WmkitError(f"unknown planner {name!r}; expected one of {', '.join(PLANNERS)}")
    return PLANNERS[name]


def frames_to_tensor(rgb: np.ndarray, device) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 frames -> ``(B, 3, H, W)`` uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).to(device)


def check_horizon(horizon: int, replan_every: int) -> None:
    """Refuse a plan length and replanning interval an MPC agent cannot use."""
    if horizon < 1 or not 1 <= replan_every <= horizon:
        raise WmkitError(f"need horizon >= 1 and 1 <= replan_every <= horizon, got horizon={horizon}, replan_every={replan_every}")


def check_model_world(model, world) -> None:
    """Refuse a world the model was not trained for: another action size, frame size or world."""
    frame_skip = model.frame_skip
    env_action_dim = model.cfg.action_dim // frame_skip
    if world.spec.action_dim != env_action_dim:
        raise WmkitError(f"the model was trained with {env_action_dim}-D actions (x frame skip {frame_skip}), but "
                         f"world '{world.spec.name}' takes {world.spec.action_dim}-D actions: use a checkpoint trained on this world")
    if world.size != model.cfg.image_size:
        raise WmkitError(f"the model takes {model.cfg.image_size}px frames but the world renders {world.size}px")
    trained_on = (getattr(model, "checkpoint_meta", {}) or {}).get("dataset", {}).get("env")
    if trained_on and trained_on != world.spec.name:
        raise WmkitError(f"the checkpoint was trained on '{trained_on}' data, not '{world.spec.name}'; use a checkpoint of this world")


class MPCAgent:
    """Encode the observation and the goal image, plan ``horizon`` model steps in latent space,
    execute the first ``replan_every`` of them, then plan again (warm-started from the rest). With
    ``hold`` the planner searches one env action per model step, held over the frame skip."""

    def __init__(self, model, planner: str = "cem", horizon: int = 5, replan_every: int = 1,
                 cost: CostConfig | None = None, planner_options: dict | None = None, seed: int = 0, hold: bool = False):
        check_horizon(horizon, replan_every)
        self.model = model.eval()
        self.plan_fn, self.planner_name = _planner(planner), planner
        self.horizon, self.replan_every = horizon, replan_every
        self.cost_cfg = cost or CostConfig()
        if planner == "gradient" and self.cost_cfg.metric == "state":
            raise WmkitError("metric 'state' scores read-out states with the world's goal distance, which has no gradient: "
                             "plan with the cem or mppi planner")
        self.options = dict(planner_options or {})
        self.generator = torch.Generator().manual_seed(seed)
        self.frame_skip = model.frame_skip
        self.hold = bool(hold)
        if model.cfg.action_dim % self.frame_skip:
            raise WmkitError(f"model action size {model.cfg.action_dim} is not a multiple of its frame skip {self.frame_skip}")
        self.env_action_dim = model.cfg.action_dim // self.frame_skip
        self.device = next(model.parameters()).device
        self.latencies: list[float] = []

    def check_world(self, world) -> None:
        check_model_world(self.model, world)

    @torch.no_grad()
    def reset(self, world, obs: dict) -> None:
        self.check_world(world)
        # worlds act in [-1, 1]; a Gymnasium env in its own box, tiled over the frame skip
        low, high = getattr(world, "action_bounds", (-1.0, 1.0))
        self.low = torch.as_tensor(np.tile(np.broadcast_to(low, (self.env_action_dim,)), self.frame_skip), dtype=torch.float32)
        self.high = torch.as_tensor(np.tile(np.broadcast_to(high, (self.env_action_dim,)), self.frame_skip), dtype=torch.float32)
        goal = world.render_goal()
        self.set_goal(goal)
        self.z_hist, self.a_hist, self.plan, self.queue, self.since = [], [], None, [], 0
        self.imagined = None

    @torch.no_grad()
    def set_goal(self, goal_images: np.ndarray) -> None:
        size = self.model.cfg.image_size
        if goal_images.ndim != 4 or goal_images.shape[1:] != (size, size, 3) or goal_images.dtype != np.uint8:
            raise WmkitError(f"goal images must be (B, {size}, {size}, 3) uint8 RGB, got {goal_images.shape} {goal_images.dtype}")
        self.z_goal = self.model.encode(frames_to_tensor(goal_images, self.device))  # (B, D)

    @torch.no_grad()
    def _encode(self, obs: dict) -> torch.Tensor:
        return self.model.encode(frames_to_tensor(obs["rgb"], self.device))  # (B, D)

    def act(self, world, obs: dict) -> np.ndarray:
        if self.queue:
            return self.queue.pop(0)
        z = self._encode(obs)
        b = z.shape[0]
        self.z_hist = (self.z_hist + [z])[-self.model.history:]
        if self.plan is None or self.since >= self.replan_every:
            self._replan(b)
        block = self.plan[:, self.since]  # (B, k*A): one model step = k env steps
        self.since += 1
        self.a_hist = (self.a_hist + [block])[-max(self.model.history - 1, 1):]  # actions between context latents
        env_actions = block.view(b, self.frame_skip, self.env_action_dim).cpu().numpy().astype(np.float64)
        self.queue = [env_actions[:, i] for i in range(1, self.frame_skip)]
        return env_actions[:, 0]

    @torch.no_grad()
    def _replan(self, b: int) -> None:
        context = torch.stack(self.z_hist, 1)  # (B, T0, D)
        t0 = context.shape[1]
        past = (torch.stack(self.a_hist[-(t0 - 1):], 1) if t0 > 1 else
                context.new_zeros(b, 0, self.model.cfg.action_dim))
        init = shift_plan(self.plan, self.since) if self.plan is not None else None
        cost = model_cost(self.model, context, past, self.z_goal, self.cost_cfg)
        start = time.perf_counter()
        result = search_held(self.plan_fn, cost, b, self.horizon, self.model.cfg.action_dim,
                             self.frame_skip if self.hold else 1, low=self.low, high=self.high, init=init,
                             generator=self.generator, device=self.device, **self.options)
        self.latencies.append(time.perf_counter() - start)
        self.plan, self.since = result.actions, 0
        self.imagined = self.model.rollout(context, self.plan, past)  # (B, H, D), for videos


class RandomAgent:
    """Uniform random actions from each copy's own generator."""

    latencies: list[float] = []

    def reset(self, world, obs) -> None:
        self.latencies = []

    def act(self, world, obs) -> np.ndarray:
        return world.sample_actions()


class OracleAgent:
    """MPC with the true simulator as the model: candidates are rolled out in a copy of the world
    started from the true state, and scored by the world's own goal distance after the horizon."""

    def __init__(self, planner: str = "cem", horizon: int = 5, frame_skip: int = 1, replan_every: int = 1,
                 planner_options: dict | None = None, seed: int = 0, reduce: str = "min", hold: bool = False):
        check_horizon(horizon, replan_every)
        if reduce not in REDUCTIONS:
            raise WmkitError(f"oracle cost reduce {reduce!r} must be one of {REDUCTIONS}")
        self.reduce, self.hold = reduce, bool(hold)
        self.plan_fn = _planner(planner)
        self.horizon, self.frame_skip, self.replan_every = horizon, frame_skip, replan_every
        self.options = dict(planner_options or {})
        self.generator = torch.Generator().manual_seed(seed)
        self.latencies: list[float] = []

    def reset(self, world, obs) -> None:
        self.plan, self.since, self.queue = None, 0, []
        self.sim = None
        self.latencies = []

    def _simulate(self, world, state: np.ndarray, actions: torch.Tensor, size: int, read) -> list:
        """Roll candidates ``(B, S, H, A)`` out in a copy of ``world`` (frames of ``size`` pixels)
        started from ``state``; ``read(sim)`` after every model step, as the model agent sees it."""
        from ..envs import make_world

        b = len(state)
        _, s, h, a = actions.shape
        if self.sim is None or self.sim.num_envs != b * s or self.sim.size != size:
            self.sim = make_world(world.spec.name, num_envs=b * s, size=size, **_world_params(world))
            self.sim.reset(list(range(b * s)))
        self.sim.set_state(np.repeat(state, s, axis=0))
        steps = actions.reshape(b * s, h * self.frame_skip, a // self.frame_skip).cpu().numpy().astype(np.float64)
        out = []
        for t in range(steps.shape[1]):
            self.sim.simulate(steps[:, t])
            if (t + 1) % self.frame_skip == 0:
                out.append(read(self.sim))
        return out

    def _cost(self, world):
        state, goal = world.state(), world.goal_state()

        def cost(actions: torch.Tensor) -> torch.Tensor:
            b, s = actions.shape[:2]
            goals = np.repeat(goal, s, axis=0)
            dists = self._simulate(world, state, actions, 16, lambda sim: world.goal_distance(sim.state(), goals))
            total = reduce_horizon(np.stack(dists, -1), self.reduce)
            return torch.from_numpy(total.reshape(b, s)).float()

        return cost

    def act(self, world, obs) -> np.ndarray:
        if self.queue:
            return self.queue.pop(0)
        a = world.spec.action_dim
        b = world.num_envs
        if self.plan is None or self.since >= self.replan_every:
            init = shift_plan(self.plan, self.since) if self.plan is not None else None
            start = time.perf_counter()
            result = search_held(self.plan_fn, self._cost(world), b, self.horizon, a * self.frame_skip,
                                 self.frame_skip if self.hold else 1, low=-1.0, high=1.0, init=init,
                                 generator=self.generator, **self.options)
            self.latencies.append(time.perf_counter() - start)
            self.plan, self.since = result.actions, 0
        block = self.plan[:, self.since].view(b, self.frame_skip, a).numpy().astype(np.float64)
        self.since += 1
        self.queue = [block[:, i] for i in range(1, self.frame_skip)]
        return block[:, 0]


class TrueDynamicsAgent(OracleAgent):
    """The oracle's search over the true simulator, scored by the *model's* cost: every candidate's
    simulated frames are rendered after each model step, encoded, and their latent distance to the
    goal image's latent is reduced over the horizon as the model agent's is. It plans with perfect
    dynamics and the model's idea of "closer to the goal", so a gap between the model agent and the
    oracle splits into what the model's dynamics lose (model vs this agent) and what its cost loses
    (this agent vs the oracle)."""

    def __init__(self, model, cost: CostConfig, planner: str = "cem", horizon: int = 5, frame_skip: int = 1,
                 replan_every: int = 1, planner_options: dict | None = None, seed: int = 0, hold: bool = False):
        super().__init__(planner, horizon, frame_skip, replan_every, planner_options, seed, cost.reduce, hold)
        self.model, self.cost_cfg = model.eval(), cost
        self.device = next(model.parameters()).device

    def reset(self, world, obs) -> None:
        super().reset(world, obs)
        with torch.no_grad():
            self.z_goal = self.model.encode(frames_to_tensor(world.render_goal(), self.device))  # (B, D)

    def _encode_frames(self, sim) -> torch.Tensor:
        return self.model.encode(frames_to_tensor(sim.render(), self.device))  # (B*S, D)

    def _cost(self, world):
        state = world.state()

        @torch.no_grad()
        def cost(actions: torch.Tensor) -> torch.Tensor:
            b, s, h = actions.shape[:3]
            z = torch.stack(self._simulate(world, state, actions, self.model.cfg.image_size, self._encode_frames), 1)
            return latent_cost(z.view(b, s, h, -1), self.z_goal, self.cost_cfg).float().cpu()  # (B, S, H, D) -> (B, S)

        return cost


def _world_params(world) -> dict:
    """Constructor parameters of a built-in world, from its spec (so the oracle's copy matches)."""
    base = getattr(world, "world", world)  # a goal-overriding wrapper keeps the world it drives
    return constructor_params(type(base), base.spec.extra)


def collected_world_params(store) -> dict:
    """Constructor parameters of the built-in world a collection (an ``EpisodeStore``) was recorded
    from: its stored ``world_params`` that the world accepts, so that a world made again to replay,
    re-render or score the data is the one that recorded it (e.g. a non-default success radius)."""
    from ..envs import world_class

    return constructor_params(world_class(store.meta["env"]), store.meta.get("world_params") or {})


def constructor_params(world_cls, extra: dict) -> dict:
    """The entries of a world spec's ``extra`` (or a dataset's ``world_params``) that the world's
    constructor accepts, lists turned back into tuples."""
    import inspect

    accepted = inspect.signature(world_cls.__init__).parameters
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in extra.items() if k in accepted}
