"""Typed configuration: dataclasses with a docstring per field, named presets, ``key=value``
overrides. The command line is derived from these classes, so a field documented here is a flag
documented there."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .errors import WmkitError
from .overrides import _coerce, field_docs, parse_overrides  # noqa: F401 (field_docs, parse_overrides re-exported)


@dataclass
class CollectConfig:
    env: str = "two-room"
    """World id (two-room, push-t, reacher, balls) or a Gymnasium id (Pendulum-v1, module:Id)."""
    episodes: int = 256
    """Number of episodes to collect."""
    steps: int = 0
    """Control steps per episode (frames = steps + 1); 0 uses the world's default length."""
    policy: str = ""
    """Data policy: 'explore' (noisy goal-seeking toward random sub-goals, built-in worlds), 'expert' (scripted demonstrations toward each episode's goal, push-t) or 'random'; empty picks explore for worlds, random for Gymnasium."""
    noise: float = 0.3
    """Share of uniform random action mixed into the explore or expert policy, in [0, 1]."""
    hold: int = 1
    """Env steps each policy action is kept for: the policy is asked every `hold` steps. With policy random and hold equal to the training frame skip, each model step is one random target held, as the planners' held candidates are (`--hold true`)."""
    size: int = 64
    """Rendered frame size in pixels (square)."""
    obs_keys: tuple = ("rgb",)
    """Observation keys to record: any of rgb, depth, proprio."""
    workers: int = 2
    """Worker processes (one simulator each)."""
    seed: int = 0
    """Base seed; episode i uses a seed derived from (seed, i)."""
    episodes_per_chunk: int = 32
    """Episodes per chunk file; also the batch size of a batched world."""
    compression: str = "lzf"
    """Frame compression in HDF5: lzf (fast), gzip-N (smaller), none."""
    params: dict = field(default_factory=dict)
    """World parameters passed to its constructor (e.g. {"door_width": 0.25})."""

    def validate(self) -> "CollectConfig":
        checks = [
            (self.episodes >= 1, "episodes", "at least 1"),
            (self.steps >= 0, "steps", ">= 0"),
            (0.0 <= self.noise <= 1.0, "noise", "in [0, 1]"),
            (self.hold >= 1, "hold", "at least 1 env step"),
            (16 <= self.size <= 1024, "size", "between 16 and 1024"),
            (self.workers >= 1, "workers", ">= 1"),
            (self.episodes_per_chunk >= 1, "episodes_per_chunk", ">= 1"),
            (set(self.obs_keys) <= {"rgb", "depth", "proprio"} and "rgb" in self.obs_keys, "obs_keys", "rgb plus any of depth, proprio"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise WmkitError(f"config field '{name}' = {getattr(self, name)!r} is invalid: expected {expected}")
        return self


@dataclass
class ModelConfig:
    """The world model's architecture. Data-dependent fields (action_dim, image_size, ...) are filled
    from the dataset by ``wmkit train``; the rest comes from the preset."""

    encoder: str = "cnn"
    """Image encoder: 'cnn' (fast on CPU), 'vit' (patch tokens, attention-pooled) or 'objects' (learned keypoints, each a position, a presence and an appearance code: an object-centric latent of `objects` tokens; train it with model.decoder=true and recon_weight > 0, pair it with predictor=objects)."""
    objects: int = 12
    """Keypoints of the 'objects' encoder (enough for every kind of object in the data, plus a few that settle on still parts of the scene)."""
    object_appearance: int = 4
    """Appearance numbers per keypoint of the 'objects' encoder (colour, shape, size)."""
    object_offsets: bool = False
    """Let every cell of the 'objects' encoder vote where its keypoint's object is: the keypoint is the softmax mean of each cell's place plus an offset it reads (at most 0.3 image half-widths), not of the places alone, so the visible part of a ball half behind a screen can place its centre there. Starts at zero offsets (the same keypoints as without), so init_from may turn it on over a first stage trained without it."""
    object_pairs: str = "offset"
    """The 'objects' predictor's message between keypoints: 'offset' (from both states and their offset, averaged over partners) or 'relative' (from each pair's offset, distance and approach since the last frame, through two layers, gated by both presences and carried on in the state: the terms a collision depends on). On balls keypoints it scored as 'offset' does, collisions included (BENCHMARKS.md)."""
    object_motion: bool = False
    """Give the 'objects' predictor each keypoint's motion as an input of its own: where it is believed to be and how fast it moves, by dead reckoning (a hidden keypoint moves on from where it was last seen, at the velocity last seen, changed by an acceleration the predictor learns), and its change of presence. Without it the predictor's state alone carries a ball behind the screen (BENCHMARKS.md)."""
    object_futures: int = 1
    """How many futures the 'objects' predictor imagines from one context (each open-loop step conditioned on which). Trained, the rollout loss scores the one nearest to what came (with a small share for the others); the physics suite's surprise is the error of the nearest. One future predicted by squared error is the mean of those that can follow, and a hidden ball's keypoint (back on the ball, or still where it waited) came out two frames late (BENCHMARKS.md). Other rollouts (probes, planning) read the mean of the futures."""
    channels: int = 32
    """Width of the first CNN stage (doubles per stage), or the ViT token width / 4."""
    embed_dim: int = 128
    """Latent size D: the representation that is predicted, regularised and planned in."""
    grid: int = 0
    """Per-region latents: 0 gives one embed_dim vector per frame; G > 0 a G x G map of embed_dim-channel cells (the latent is the flattened map, G*G*embed_dim numbers; regularisers treat every cell as a sample), as V-JEPA's patch tokens. A static region then costs little, and a small moving object has cells of its own. CNN encoder; pair it with predictor=conv."""
    keypoints: int = 0
    """Spatial soft-argmax keypoints added to the CNN encoder's feature (x, y and presence of each): explicit positions of small objects; 0 = off."""
    patch_size: int = 8
    """ViT patch size in pixels."""
    vit_depth: int = 4
    """ViT transformer blocks."""
    predictor: str = "transformer"
    """Predictor: 'transformer' (causal, action-conditioned by AdaLN), 'mlp' (Markov), 'gru', 'conv' (a CNN over the latent map of model.grid; reads the last `history` maps), 'convgru' (a convolutional GRU over the latent map: a recurrent hidden map that can carry what is out of view; reads up to `history` maps from the window's start), or 'objects' (one GRU state per keypoint of the objects encoder, with attention and pairwise interactions between them)."""
    predictor_width: int = 256
    """Hidden width of the predictor."""
    predictor_depth: int = 2
    """Transformer blocks (or MLP hidden layers / GRU layers; conv: residual 3x3 blocks; convgru: the GRU cell and depth - 1 residual blocks) of the predictor."""
    predictor_heads: int = 4
    """Attention heads of the transformer predictor."""
    history: int = 4
    """Most past latents the predictor attends to (its context length)."""
    mlp_history: int = 1
    """Latents the MLP predictor reads (the last k, concatenated): 1 is Markov; 2 also gives velocity."""
    dropout: float = 0.0
    """Dropout in the predictor."""
    predictor_coords: bool = False
    """Conv predictor: read the action per cell with the cell's position, so an action that names a place (a target position) can move the right cells."""
    predictor_deltas: bool = False
    """Also feed the transformer predictor each latent's change since the previous one: motion read from history, which action-free video needs most."""
    obs_keys: tuple = ("rgb",)
    """Observation keys the encoder fuses: rgb, plus depth and/or proprio when the data has them."""
    action_dim: int = 0
    """Action size per model step (dataset action dim x frame skip); 0 for action-free video."""
    image_size: int = 64
    """Frame size in pixels (from the dataset)."""
    proprio_dim: int = 0
    """Proprioception size (from the dataset; 0 when not used)."""
    decoder: bool = False
    """Build a pixel decoder (the pixel-reconstruction baseline objective needs one)."""
    inverse_head: bool = False
    """Build an inverse-dynamics head (the inverse loss term needs one)."""
    state_names: tuple = ()
    """State variables a state-readout head reads from a latent (set by ``wmkit train`` from train.state_vars when state_weight > 0); empty: no head."""
    state_angles: tuple = ()
    """Of state_names, the angles (read as cosine and sine); set by ``wmkit train`` from the world."""
    inverse_frames: int = 2
    """Latents the inverse-dynamics head reads to guess the action between the last two: 2 (z_t, z_t+1) suits position control; 3 adds z_t-1, so a torque (a change of velocity) can be read too."""


@dataclass
class TrainConfig:
    """How a world model is trained: objective, optimisation, data windows, logging."""

    objective: str = "jepa"
    """'jepa' (predict the next latent) or 'pixel' (predict the next frame through a decoder: the baseline)."""
    regularizer: str = "sigreg"
    """Anti-collapse: 'sigreg' (LeJEPA), 'vicreg' (variance + covariance) or 'ema' (EMA target encoder)."""
    sigreg_weight: float = 0.1
    """Weight of the SIGReg term."""
    sigreg_projections: int = 256
    """Random 1-D directions per SIGReg evaluation."""
    sigreg_knots: int = 17
    """Quadrature knots of the Epps-Pulley integral on [0, 3]."""
    sigreg_samples: int = 4096
    """Most latent vectors per process the SIGReg terms read per step, a random subset when there are more (a latent map gives G*G vectors per frame; the statistic's cost grows with their number)."""
    vicreg_var_weight: float = 1.0
    """Weight of the VICReg variance (hinge on per-dimension std) term."""
    vicreg_cov_weight: float = 0.04
    """Weight of the VICReg covariance (off-diagonal) term."""
    ema_decay: float = 0.996
    """Decay of the EMA target encoder (regularizer='ema')."""
    pred_weight: float = 1.0
    """Weight of the one-step prediction loss. 0, with rollout_weight=0, trains an encoder by its other terms alone: an autoencoder stage (recon_weight > 0, sigreg_weight=0) whose latents the prediction loss would otherwise pull toward what does not move (the objects encoder's keypoints then settle on still places instead of the balls; BENCHMARKS.md). The predictor is then neither run nor trained (the validation still reports its error)."""
    presence_change_weight: float = 1.0
    """Objects latents: the weight, in the prediction and rollout losses, of a keypoint whose presence changes between the frame a prediction starts from and the one it predicts (a ball coming out from behind a screen or going in). Such a token's error is of order 1, a frame's motion a few thousandths; below 1 the motion (collisions included) is what the predictor learns first (BENCHMARKS.md). 1 weighs every token alike."""
    presence_weight: float = 0.0
    """Objects latents: weight of the keypoints' mean presence in the loss, a price on every keypoint that is present. A keypoint then stays present only where the redrawn frame needs it, so when its ball goes behind the screen it vanishes instead of moving onto the other ball or a place on the screen, which is what it did on balls in two frames of three (BENCHMARKS.md). 0 turns it off."""
    prediction_error: str = "squared"
    """How the prediction and rollout losses score each predicted number: 'squared' (mean squared error) or 'absolute' (mean absolute error). A squared error over futures that differ (a hidden ball's keypoint back on the ball, or still on the screen where it waited) is least at their mean, which lies between them; an absolute error is least at their median, one of the futures when most of them agree (BENCHMARKS.md). Validation reports the squared error either way."""
    jump_weight: float = 0.0
    """Objects latents: weight of a price on keypoint jumps, the squared part of each present keypoint's change of velocity between consecutive frames (its second difference, in image half-widths) beyond jump_size, weighed by its presence in the three frames. A ball that moves on, or bounces, costs nothing; a keypoint whose ball goes behind the screen then vanishes (presence 0) instead of jumping onto the other ball or the screen, which it did in two hidings of three, and which left the predictor to carry the hidden ball in its state alone (BENCHMARKS.md). 0 turns it off."""
    jump_size: float = 0.35
    """The change of velocity per frame, in image half-widths, above which jump_weight prices a keypoint (a ball on balls moves at most ~0.14 a frame, so a bounce changes its velocity by at most ~0.3)."""
    occlude_weight: float = 0.0
    """Objects latents, first stage: weight of occlusion consistency. Every frame is drawn again with a rectangle (occlude_colour) over part of something that moves in its window, and the keypoints of that frame are pulled toward the frame's own (held fixed), position and presence, by how much of their object stays in view (in full from a quarter up, not at all once wholly hidden). Without it a keypoint follows the part of a ball still in view as the ball goes in behind a screen, and falls behind its centre (wmkit/occlusion.py, BENCHMARKS.md). 0 turns it off."""
    occlude_colour: str = "random"
    """The colour occlude_weight paints its rectangles in: 'random' (each its own) or 'R,G,B' (0-255 each), the colour of the scene's screens. A random colour is told apart from the scene's own screen, so what the encoder learns about it need not carry over (BENCHMARKS.md)."""
    occlude_vanish: float = 0.0
    """With occlude_weight: the weight of a pull toward absence (presence 0) on the keypoint of a moving object that the rectangle wholly covers. Without it such a keypoint is left free, and on balls it stays present behind the screen and moves onto the screen or the other ball (wmkit/occlusion.py, BENCHMARKS.md). 0 turns it off."""
    occlude_radius: float = 0.13
    """The radius of an object around its keypoint, in image half-widths, that occlude_weight places its rectangles by and counts the share in view of (a ball on balls is 0.10-0.16)."""
    rollout_steps: int = 2
    """Open-loop steps of the multi-step rollout loss (0 turns it off)."""
    rollout_weight: float = 0.5
    """Weight of the multi-step rollout loss."""
    rollout_context: int = 1
    """Latents the rollout loss starts from (the window's first ones, teacher-forced): 1 imagines from a
    single frame; more lets a model with memory read velocities first, as evaluation rollouts do."""
    rollout_context_min: int = 0
    """When >= 1, each step draws the rollout's context uniformly from ``rollout_context_min`` to
    ``rollout_context`` latents, so that a predictor with memory also learns to imagine from short
    histories (an evaluation that gives it fewer frames than ``rollout_context``); 0 always uses
    ``rollout_context``."""
    inverse_weight: float = 0.0
    """Weight of the inverse-dynamics term (predict a_t from z_t, z_t+1); 0 turns it off."""
    recon_weight: float = 0.0
    """Weight of an auxiliary reconstruction of one frame per window from its latent (through a pixel decoder), so the encoder is asked to keep what the frame shows, not only what predicts the next latent; 0 turns it off."""
    recon_frames: int = 1
    """Frames of each window the reconstruction decodes (different ones, drawn at random): 1 keeps the decoder's cost a fraction of the encoder's; more suits a decoder as cheap as the encoder (the objects encoder's blobs), whose training is mostly reconstruction."""
    recon_focus: float = 0.0
    """Extra weight, in the reconstruction, of the pixels that change within the window (what moves): each such pixel counts 1 + recon_focus times a still one, so a few small moving things are not outweighed by a large still background; 0 weighs all pixels alike."""
    recon_focus_from: str = "window"
    """Which pixels recon_focus weighs: 'window', those that differ from the same pixel in some frame of the window (a moving thing's edges in short windows, and where it is at other times); 'median', those that differ from the window's per-pixel median frame: the whole of each moving thing where it is now, in windows long enough (about 8 frames on balls) that it leaves the pixels it covers."""
    state_weight: float = 0.0
    """Weight of the predicted-state term: a readout head learns the recorded state from the target latents (their
    gradient stops there: the representation is not changed by it), and the predictor's latents, one step ahead and
    along the rollout, must read as the state that came (the head held fixed for them). An action's effect on a small
    object (push-t's block) is a small part of a latent error; read as state it is not. Needs data that records
    states; 0 turns it off."""
    state_scale: str = "state"
    """What the predictions' state error is measured in: 'state' (each feature's spread over the data) or 'change' (the spread of its change over one model step: a small object's moves, which barely change where it is, weigh as much as the pusher's)."""
    state_warmup: int = 1000
    """Steps over which the predicted-state term's weight grows from 0 to state_weight: a fresh readout head reads
    nothing yet, and its error would only push predictions about."""
    state_vars: str = ""
    """Comma-separated state variables the readout head learns (default: every variable the data records)."""
    pred_decoded_weight: float = 0.0
    """Weight of a prediction error measured in pictures: the model's frozen pixel decoder draws the predicted latent and the target latent, and their squared difference is weighed like the reconstruction (pixels where the decoded current and target frames differ count 1 + recon_focus times). A small moving object (push-t's block) covers many pixels but few latent numbers; this term asks the predictor to move it. Needs freeze_encoder=true and init_from a run trained with recon_weight > 0 (its decoder is copied and kept fixed, or the term would let it flatten every picture); works with cache_latents. 0 turns it off."""
    temporal_weight: float = 0.0
    """Weight of temporal SIGReg: within each window, the latents' deviations from the window mean, divided by temporal_scale, are pushed toward N(0, I), so what changes over time must be encoded; 0 turns it off."""
    temporal_scale: float = 0.5
    """Target spread of the within-window deviations for temporal SIGReg (the latents themselves have unit spread)."""
    appearance_channels: int = 0
    """How many latent channels (the last ones of each cell of a latent map, or of the vector) hold what a scene keeps over time: an object's colour, shape and size. Summed over the map, they must stay the same within a window (slowness) and vary between scenes (VICReg's variance and covariance terms over the batch), so they become an object-centric code of appearance that moves with its object. The per-cell SIGReg and the temporal term, which favour motion, leave them out; the predictor predicts them like the rest. With a latent map the sum is over the cells where something moves (wmkit.losses.moving_cells), so a scene's still parts (where its screen stands) are not the code. 0 turns it off."""
    appearance_weight: float = 1.0
    """Weight of the appearance term (see appearance_channels)."""
    window: int = 4
    """Frames per training window (T)."""
    frame_skip: int = 1
    """Model step = this many environment steps; their actions are concatenated."""
    batch_size: int = 64
    """Global batch size in windows (split evenly over ranks)."""
    lr: float = 1e-3
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.01
    """AdamW weight decay (not applied to norms and biases)."""
    warmup_steps: int = 100
    """Linear warm-up steps, then cosine decay to 10% of the peak."""
    max_steps: int = 2000
    """Optimisation steps in total."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 turns it off)."""
    init_from: str = ""
    """Start from the weights of this run or checkpoint folder (same model config); empty starts from scratch."""
    freeze_encoder: bool = False
    """Keep the encoder and projector fixed (no gradient, BatchNorm statistics frozen) and train the predictor only: a predictor on a frozen representation, as V-JEPA 2-AC does."""
    cache_latents: bool = False
    """With freeze_encoder=true: encode every frame once before training and train on the stored latents, so no step reads or encodes an image (holds frames x latent size x 4 bytes in memory)."""
    val_every: int = 250
    """Validate on held-out episodes every this many steps (0: only at the end)."""
    val_batches: int = 8
    """Batches per validation."""
    val_fraction: float = 0.1
    """Share of episodes held out for validation."""
    ckpt_every: int = 500
    """Save a checkpoint every this many steps (and always at the end)."""
    keep_last: int = 3
    """Checkpoints kept on disk."""
    log_every: int = 10
    """Write metrics every this many steps."""
    num_workers: int = 2
    """DataLoader worker processes per rank."""
    seed: int = 0
    """Seed of initialisation, data order and regulariser sampling."""
    device: str = "auto"
    """'auto' (CUDA if available), 'cpu' or 'cuda'."""
    amp: str = "auto"
    """'auto': bf16 autocast on CUDA only (this CPU has no bf16 units); 'off' to disable."""
    channels_last: bool = True
    """Channels-last memory format for convolutions (about +25% on CPU)."""
    compile: bool = False
    """torch.compile the model (costs ~1 min cold on CPU; pays off for long runs)."""
    threads: int = 0
    """torch intra-op threads (0: leave torch's default)."""
    tensorboard: bool = False
    """Also write TensorBoard event files (needs the tensorboard package)."""


@dataclass
class PlanEvalConfig:
    """How goal-reaching is evaluated (wmkit eval plan, wmkit plan)."""

    episodes: int = 50
    """Start/goal pairs (all run as one batch)."""
    budget: int = 0
    """Env steps per episode; 0 uses the world's default (two-room 60, reacher 60, push-t 200), or 2 x goal_offset with goals_from."""
    seed: int = 0
    """Selects the held-out pair set (and the planners' generators)."""
    planner: str = "cem"
    """cem, mppi or gradient."""
    horizon: int = 5
    """Model steps planned ahead (each = frame_skip env steps)."""
    replan_every: int = 1
    """Model steps executed before planning again."""
    samples: int = 300
    """Candidate action sequences per iteration (CEM/MPPI) or restarts (gradient)."""
    iterations: int = 30
    """Planner iterations per plan."""
    elites: int = 30
    """CEM/MPPI elites."""
    metric: str = "l2"
    """Latent distance to the goal: l2, l1, cosine, learned (env steps to the goal, predicted by the goal distance `wmkit fit-distance` fitted on this checkpoint), or state (the world's goal distance between the states the model's readout head reads: models trained with state_weight > 0)."""
    distance: str = ""
    """With metric learned: the goal distance's folder (default: RUN/goal-distance/step-N beside the checkpoint)."""
    dynamics: str = "latent"
    """What the model agent rolls candidates out with: 'latent' (the model's predictor) or 'read-state' (a small network of the states the model's readout head reads, fitted by `wmkit fit-dynamics`; plans with metric state)."""
    read_dynamics: str = ""
    """With dynamics read-state: the fitted dynamics' folder (default: RUN/read-dynamics/step-N beside the checkpoint)."""
    reduce: str = "min"
    """Distances along the horizon -> cost: 'last', 'sum', or 'min' (closest approach + 0.1 x mean)."""
    hold: bool = False
    """Search one env action per model step, held over the frame skip (frame_skip times fewer numbers; the oracle and true-dynamics baselines search the same way)."""
    baselines: tuple = ("random", "oracle")
    """Baselines run beside the model on the same pairs: 'random', 'oracle' (searches the true simulator, scored by the true goal distance), 'true-dynamics' (searches the true simulator, scored by the model's latent cost: splits the model's gap to the oracle into dynamics and cost) and 'state-model' (an MLP of the true state learned from the model's training episodes, searched with the model's planner settings and scored by the true goal distance: what learning dynamics from this data costs with a perfect encoder), and 'read-state' (the same MLP learned on the states the model's readout head reads from those frames, planned from images as the model plans: the model with that MLP in place of its predictor). The simulator baselines use oracle_samples x oracle_iterations."""
    state_model_steps: int = 24000
    """Training steps of the state-model and read-state baselines (MLPs of the true or read state, fitted on the model's training episodes)."""
    state_model_step: str = "env"
    """What one call of the state-model and read-state networks predicts: 'env' (one env step, applied frame-skip times per model step) or 'model' (a whole model step at once)."""
    state_model_members: int = 1
    """Networks the state-model and read-state baselines fit (seeds seed, seed + 1, ...): an ensemble, as `wmkit fit-dynamics --members` fits (5 by default there); candidates are scored in each and the costs averaged."""
    oracle_samples: int = 300
    """Oracle candidates per iteration."""
    oracle_iterations: int = 10
    """Oracle planner iterations."""
    goals_from: str = ""
    """Dataset of held-out episodes to draw start/goal pairs from (goal = the frame goal_offset steps after the start); empty: the world's own seeded pairs."""
    goal_offset: int = 25
    """With goals_from: env steps from the start frame to the goal frame (budget defaults to twice this)."""
    success: str = ""
    """With goals_from on a Gymnasium env: 'module:function', function(state, goal_state) -> bool on the recorded state vectors; empty uses the env's info['is_success']."""


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "debug": {"collect": {"episodes": 16, "steps": 20, "workers": 1, "episodes_per_chunk": 8},
              "model": {"channels": 8, "embed_dim": 32, "predictor_width": 64, "predictor_depth": 1,
                        "predictor_heads": 2, "history": 3, "patch_size": 16, "vit_depth": 1},
              "train": {"window": 3, "batch_size": 8, "max_steps": 20, "warmup_steps": 5, "val_every": 10,
                        "val_batches": 2, "ckpt_every": 10, "log_every": 1, "num_workers": 0, "val_fraction": 0.25,
                        "sigreg_projections": 64}},
    "small": {"collect": {"episodes": 512, "workers": 2},
              "model": {},
              "train": {"max_steps": 1000, "val_every": 200, "ckpt_every": 200}},
    "base": {"collect": {"episodes": 4096, "workers": 2},
             "model": {"channels": 48, "embed_dim": 192, "predictor_width": 384, "predictor_depth": 4,
                       "predictor_heads": 6, "history": 8},
             "train": {"window": 8, "batch_size": 128, "max_steps": 20000, "lr": 5e-4, "val_every": 1000,
                       "ckpt_every": 1000, "warmup_steps": 500}},
}


def build(cls, preset: str | None = None, section: str | None = None, **overrides):
    """An instance of ``cls`` from a preset section plus overrides (strings are coerced)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise WmkitError(f"unknown preset '{preset}'; expected one of {', '.join(PRESETS)}")
        values.update(PRESETS[preset].get(section, {}))
    for key, raw in overrides.items():
        if raw is None:
            continue
        if key not in names:
            raise WmkitError(f"unknown config field '{key}' for {cls.__name__}; known fields: {', '.join(sorted(names))}")
        values[key] = _coerce(cls, key, raw)
    return cls(**values)
