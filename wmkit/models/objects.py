"""An object-centric latent: learned keypoints with a presence gate and an appearance code.

    model.encoder=objects model.predictor=objects model.decoder=true      # + recon_weight > 0 to train it

:class:`ObjectEncoder` scores every cell of a half-resolution feature map for each of ``K`` keypoints;
a softmax over the cells gives the keypoint's position ``(x, y)`` in [-1, 1] (its mean, at sub-cell
precision), the highest score its presence ``g`` in (0, 1), and the same softmax weighs a 1x1
feature map into an appearance code ``a`` of ``A`` numbers in (-1, 1). The latent of a frame is the
``K`` tokens ``[g x, g y, g, g a]``, flattened: a keypoint that finds nothing (a ball of a colour
the scene does not hold, or one behind a screen) is all zeros rather than a position at random.

With ``offsets`` (``model.object_offsets=true``) every cell also votes where its keypoint's object is, a shift of
at most ``OFFSET_BOUND`` from itself, and the keypoint is the softmax mean of the shifted places: the visible part
of a ball half behind a screen can then place the ball's centre, which the cells over the screen, scoring what
they see, do not (BENCHMARKS.md). The votes start at zero.

:class:`BlobDecoder` paints a frame from the latent alone: each keypoint becomes a Gaussian blob
(scaled by its presence) carrying its appearance code, on a quarter-resolution grid, and a few 3x3
convolutions turn the blobs into each 4x4 patch's pixels. Trained together by reconstruction
(``recon_weight``, ``recon_focus`` so that small moving things count), the keypoints settle on what
the decoder needs placed: on ``balls``, given enough training (BENCHMARKS.md), one per ball colour and a
few along the screen; with too little, a rarer colour may get none.

:class:`ObjectPredictor` keeps one GRU state per keypoint. At every step the tokens first attend to
each other (what each object does depends on the others), the GRU updates, and then an interaction
layer passes a message along every ordered pair of keypoints from both states and their offset
(where two balls meet, the offset decides the bounce); each token's change is read from its state.
A ball behind a screen is a zero token, and its state carries where it is.

With ``pairs="relative"`` (``model.object_pairs=relative``) the pair message is built instead from what
decides a collision in relative terms: each pair's offset, distance and change of offset since the
last frame (their approach), through two layers, gated by both keypoints' presences and summed over
partners; the message is added to the state that is carried on, so a bounce changes the state that
later steps read. A small network learns collisions from such relative features and not from
coordinates (BENCHMARKS.md, seventeenth session).

With ``motion=True`` (``model.object_motion=true``) every keypoint also carries a belief of where it is
and how fast it moves: where it is seen while in view, its change since the last frame as its velocity, and
while hidden (presence 0) the last belief moved on by that velocity, which an acceleration read from the
state changes (a ball falls behind the screen too). The belief and the change of presence are an input of
each step. Without it a ball that passes behind the screen is carried by the GRU state alone, and comes
out late (BENCHMARKS.md).

Why: a latent map trained by mean squared error smears a ball it is unsure about over several cells,
and two meeting balls into one blob (BENCHMARKS.md). Keypoint coordinates average instead, and each
ball keeps its own token through occlusion and contact.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import WmkitError
from .encoders import image_input
from .predictors import ActionEncoder

PAIR_MESSAGES = ("offset", "relative")
POSITION_BOUND = 1.2  # keypoints lie in [-1, 1]; the relative message reads positions clamped to a little beyond
SPEED_BOUND = 0.5  # a believed velocity per frame (balls move at most ~0.2 image units a frame)
CHANGE_SCALE = 10.0  # a frame's change of offset (a few hundredths of the image) scaled to about the offsets' size
OFFSET_BOUND = 0.3  # the farthest a cell votes its keypoint's object from itself (object_offsets), in image half-widths
SIGMA = 0.1  # a blob's spread in [-1, 1] image units (a ball's radius is 0.1-0.16 of them on balls)


def _ramp(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell-centre coordinates of an ``n x n`` grid over [-1, 1]: ``(x, y)`` maps ``(n, n)``."""
    r = torch.linspace(-1.0, 1.0, n)
    gy, gx = torch.meshgrid(r, r, indexing="ij")
    return gx.contiguous(), gy.contiguous()


def token_size(appearance: int) -> int:
    return 3 + appearance


def unpack(z: torch.Tensor, num: int, appearance: int):
    """Latents ``(N, K * (3 + A))`` -> position ``x``, ``y`` ``(N, K)``, presence ``g`` ``(N, K)`` and
    appearance ``(N, K, A)``, undoing the presence scaling (a token with ``g`` below 0.05 is read at ``g`` = 0.05)."""
    d = token_size(appearance)
    if z.shape[-1] != num * d:
        raise WmkitError(f"an object latent of {num} keypoints with {appearance} appearance numbers has {num * d} numbers, "
                         f"got {z.shape[-1]}")
    tok = z.reshape(-1, num, d)
    g = tok[..., 2].clamp(0.0, 1.0)
    scale = tok[..., 2:3].clamp_min(0.05)
    xy = tok[..., :2] / scale
    return xy[..., 0], xy[..., 1], g, tok[..., 3:] / scale


class ObjectEncoder(nn.Module):
    """Frames -> ``(N, K * (3 + A))`` object tokens (see the module docstring)."""

    def __init__(self, image_size: int, num: int, appearance: int, keys: tuple[str, ...], width: int = 32,
                 offsets: bool = False):
        super().__init__()
        if num < 1 or appearance < 0:
            raise WmkitError(f"model.objects must be >= 1 and model.object_appearance >= 0, got {num} and {appearance}")
        if image_size % 4:
            raise WmkitError(f"the objects encoder needs an image size divisible by 4, got {image_size}")
        if tuple(keys) != ("rgb",):
            raise WmkitError(f"the objects encoder reads rgb alone; set obs_keys=rgb (got {list(keys)})")
        self.keys, self.num, self.appearance = tuple(keys), num, appearance
        self.body = nn.Sequential(nn.Conv2d(3, width // 2, 3, 2, 1), nn.GELU(), nn.Conv2d(width // 2, width, 3, 1, 1), nn.GELU(),
                                  nn.Conv2d(width, width, 3, 1, 1), nn.GELU())
        self.score = nn.Conv2d(width, num, 1)
        self.look = nn.Conv2d(width, appearance, 1) if appearance else None
        # offsets: each cell's vote of where its keypoint's object is, relative to the cell (model.object_offsets);
        # zero at the start, so the keypoints are the places' softmax mean until training moves them
        self.offset = nn.Conv2d(width, 2 * num, 1) if offsets else None
        if self.offset is not None:
            nn.init.zeros_(self.offset.weight)
            nn.init.zeros_(self.offset.bias)
        gx, gy = _ramp(image_size // 2)
        self.register_buffer("gx", gx.flatten(), persistent=False)
        self.register_buffer("gy", gy.flatten(), persistent=False)
        self.channels_last = False  # set by the trainer

    def keypoints(self, obs: dict[str, torch.Tensor]):
        """Frames -> each keypoint's position ``x``, ``y`` and presence ``g`` ``(N, K)``, and its appearance
        ``(N, K, A)`` (``None`` with ``A`` = 0), before the presence scales them into tokens."""
        x = image_input(obs, self.keys)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        f = self.body(x)
        logits = self.score(f).float().flatten(2)  # (N, K, cells)
        p = logits.softmax(-1)
        g = torch.sigmoid(logits.amax(-1))
        look = None
        if self.look is not None:
            look = torch.tanh(torch.einsum("nkc,nac->nka", p, self.look(f).float().flatten(2)))
        gx, gy = self.gx, self.gy
        if self.offset is not None:  # each cell's place moved by its vote
            vote = OFFSET_BOUND * torch.tanh(self.offset(f).float().flatten(2)).view(len(p), self.num, 2, -1)
            gx, gy = gx + vote[:, :, 0], gy + vote[:, :, 1]
        return (p * gx).sum(-1), (p * gy).sum(-1), g, look

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        x, y, g, look = self.keypoints(obs)
        tok = torch.stack([g * x, g * y, g], -1)
        if look is not None:
            tok = torch.cat([tok, g[..., None] * look], -1)
        return tok.flatten(1)


class BlobDecoder(nn.Module):
    """Object latent ``(N, K * (3 + A))`` -> RGB frame in [-1, 1] (see the module docstring)."""

    def __init__(self, image_size: int, num: int, appearance: int, width: int = 48):
        super().__init__()
        if image_size % 4:
            raise WmkitError(f"the blob decoder needs an image size divisible by 4, got {image_size}")
        self.num, self.appearance, self.side = num, appearance, image_size // 4
        c_in = num * (1 + appearance) + 2
        self.body = nn.Sequential(nn.Conv2d(c_in, width, 3, 1, 1), nn.GELU(), nn.Conv2d(width, width, 3, 1, 1), nn.GELU(),
                                  nn.Conv2d(width, width, 3, 1, 1), nn.GELU(), nn.Conv2d(width, 3 * 16, 1), nn.PixelShuffle(4))
        gx, gy = _ramp(self.side)
        self.register_buffer("gx", gx, persistent=False)
        self.register_buffer("gy", gy, persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        kx, ky, g, look = unpack(z, self.num, self.appearance)
        n, s = len(kx), self.side
        blob = torch.exp(-((self.gx - kx[..., None, None]) ** 2 + (self.gy - ky[..., None, None]) ** 2) / (2 * SIGMA**2))
        blob = blob * g[..., None, None]  # (N, K, s, s)
        feats = [blob, (blob[:, :, None] * look[..., None, None]).flatten(1, 2)] if self.appearance else [blob]
        x = torch.cat([*feats, self.gx.expand(n, 1, s, s), self.gy.expand(n, 1, s, s)], 1)
        return torch.tanh(self.body(x))


class ObjectPredictor(nn.Module):
    """Next object latent from one GRU state per keypoint (see the module docstring). The same
    ``run`` / ``step`` interface as the conv-GRU predictor: a window longer than ``history`` is refused
    by :meth:`WorldModel.predict`, and running a window in two parts gives :meth:`forward`'s outputs."""

    def __init__(self, num: int, appearance: int, action_dim: int, width: int, heads: int, history: int,
                 pairs: str = "offset", motion: bool = False, futures: int = 1):
        super().__init__()
        if int(futures) < 1:
            raise WmkitError(f"model.object_futures={futures}: the predictor imagines at least 1 future")
        if pairs not in PAIR_MESSAGES:
            raise WmkitError(f"model.object_pairs={pairs!r}; expected one of {', '.join(PAIR_MESSAGES)}")
        if width % heads:
            raise WmkitError(f"model.predictor_width={width} must be divisible by model.predictor_heads={heads}")
        self.num, self.size, self.width, self.history = num, token_size(appearance), width, int(history)
        self.inp = nn.Linear(self.size, width)
        self.ident = nn.Parameter(torch.randn(num, width) * 0.1)  # which keypoint: each has its own role
        self.actions = ActionEncoder(action_dim, width)
        # futures: which of several imagined futures an open-loop step continues, a conditioning of its own (see run)
        self.futures = int(futures)
        self.future = nn.Parameter(torch.randn(self.futures, width) * 0.3) if self.futures > 1 else None
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.cell = nn.GRUCell(width, width)
        # the pair message MLP's first layer, split so that it costs a matrix product per keypoint,
        # not per pair; with "offset" its second layer is linear, so it is applied after the mean over partners
        self.pairs, self.motion = pairs, bool(motion)
        # motion: each keypoint's dead-reckoned place and velocity and its change of presence, an input of its own
        # (see _belief); accel, from the state, is the change of velocity that dead reckoning adds (gravity, say)
        self.motion_in = nn.Linear(5, width, bias=False) if self.motion else None
        self.accel = nn.Linear(width, 2) if self.motion else None
        if self.motion:
            nn.init.zeros_(self.accel.weight)
            nn.init.zeros_(self.accel.bias)
        self.edge_self, self.edge_other = nn.Linear(width, width), nn.Linear(width, width, bias=False)
        if pairs == "offset":
            self.edge_offset, self.edge_out = nn.Linear(3, width, bias=False), nn.Linear(width, width)
        else:  # offset, distance and change of offset, two layers per pair
            self.edge_offset, self.edge_mid = nn.Linear(5, width, bias=False), nn.Linear(width, width)
            self.edge_out = nn.Linear(width, width)
            self.register_buffer("others", 1.0 - torch.eye(num), persistent=False)  # a keypoint sends itself no message
        self.out = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Linear(width, self.size))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def _step(self, z: torch.Tensor, cond: torch.Tensor, state):
        b = len(z)
        tok = z.reshape(b, self.num, self.size)
        # the state: h alone, or (h, xy, g) with the last frame's positions and presences, + (xb, vb) with motion
        carried = self.pairs == "relative" or self.motion
        h, last, belief = None, None, None
        if state is not None:
            h, last, belief = (state, None, None) if not carried else (state[0], state[1:3], state[3:] or None)
        kx, ky = unpack(z, self.num, self.size - 3)[:2]
        xy, g = torch.stack([kx, ky], -1), tok[..., 2]
        if carried:  # held to the image (see _relative): an imagined near-absent token reads far outside it
            xy, g = xy.clamp(-POSITION_BOUND, POSITION_BOUND), g.clamp(0.0, 1.0)
        u = self.inp(tok) + self.ident + cond[:, None]
        if self.motion:
            feats, belief = self._belief(xy, g, last, belief)
            u = u + self.motion_in(feats)
        if h is not None:
            u = u + h
        v = self.norm1(u)
        u = u + self.attn(v, v, v, need_weights=False)[0]
        u = u + self.mlp(self.norm2(u))
        prev = u.new_zeros(b * self.num, self.width) if h is None else h.reshape(-1, self.width)
        h = self.cell(u.reshape(-1, self.width), prev).view(b, self.num, self.width)
        q = self.norm3(h)
        if self.motion:  # the velocity dead reckoning carries into the next frame changes as the state says
            belief = (belief[0], (belief[1] + self.accel(h) / CHANGE_SCALE).clamp(-SPEED_BOUND, SPEED_BOUND))
        if self.pairs == "relative":
            out, carry = self._relative(z, q, h, xy, g, last)
            return out, (carry + belief if self.motion else carry)
        offset = torch.cat([xy[:, :, None] - xy[:, None], (g[:, :, None] * g[:, None])[..., None]], -1)  # (b, K, K, 3)
        e = F.gelu(self.edge_self(q)[:, :, None] + self.edge_other(q)[:, None] + self.edge_offset(offset))
        y = h + self.edge_out(e.mean(2))
        return z + self.out(y).flatten(1), ((h, xy, g, *belief) if self.motion else h)

    def _belief(self, xy, g, last, belief):
        """Dead reckoning (``motion``): where each keypoint is believed to be, ``xb``, and how fast it moves per
        frame, ``vb``, from what the frame shows and the belief a frame ago. A keypoint in view is where it is seen,
        moving by its change since the last frame where it was in view then too; a hidden one (presence 0) moves
        on from where it was believed to be, by the velocity believed, which the state's acceleration changes
        (soft, by the presences). Without this the state alone has to carry a hidden ball, and ten frames on
        it lagged two frames of motion behind (BENCHMARKS.md). -> (the input features, (xb, vb))."""
        seen = g[..., None]
        if last is None:  # the first frame: no motion seen yet
            xb, vb, dg = seen * xy, torch.zeros_like(xy), torch.zeros_like(g)
        else:
            (xy0, g0), (xb0, vb0) = last, belief
            both = seen * g0[..., None]
            vb = both * (xy - xy0) + (1.0 - both) * vb0
            xb = seen * xy + (1.0 - seen) * (xb0 + vb0)
            dg = g - g0
        xb, vb = xb.clamp(-POSITION_BOUND, POSITION_BOUND), vb.clamp(-SPEED_BOUND, SPEED_BOUND)
        return torch.cat([xb, CHANGE_SCALE * vb, dg[..., None]], -1), (xb, vb)

    def _relative(self, z, q, h, xy, g, last):
        """The relative pair message (``pairs="relative"``); the state carried on is ``(h, xy, g)``."""
        # xy and g come held to the image by _step: an imagined token with a presence near 0 reads as a position
        # far outside it (unpack divides by the presence), and unbounded it would blow up the messages over a long
        # rollout; likewise its presence, which gates the message: above 1 it feeds a larger message into the
        # state, a larger change into the next latent and a larger gate again, until the rollout overflows
        off = xy[:, :, None] - xy[:, None]  # (b, K, K, 2)
        dist = (off.square().sum(-1, keepdim=True) + 1e-6).sqrt()
        gate = g[:, :, None] * g[:, None] * self.others
        if last is None:  # the first frame: no motion seen yet
            change = torch.zeros_like(off)
        else:  # where either keypoint was absent a frame ago, its change is unknown: 0
            xy0, g0 = last
            change = (off - (xy0[:, :, None] - xy0[:, None])) * (g0[:, :, None] * g0[:, None])[..., None]
        feats = torch.cat([off, dist, CHANGE_SCALE * change], -1)
        e = F.gelu(self.edge_self(q)[:, :, None] + self.edge_other(q)[:, None] + self.edge_offset(feats))
        e = F.gelu(self.edge_mid(e))
        h = h + self.edge_out((gate[..., None] * e).sum(2))
        return z + self.out(h).flatten(1), (h, xy, g)

    def forward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.run(z, actions)[0]

    def run(self, z: torch.Tensor, actions: torch.Tensor, state=None, future: torch.Tensor | None = None):
        """The recurrence over a window ``(B, T, K * (3 + A))`` from the states after the steps before
        (``None`` at the start) -> (next latents ``(B, T, ...)``, the states after the window). ``future``
        (``object_futures`` > 1): per window, the index of the imagined future its open-loop steps continue
        (``None``: read from frames, no future chosen)."""
        b, t, d = z.shape
        if d != self.num * self.size:
            raise WmkitError(f"the objects predictor takes latents of {self.num} tokens x {self.size} = {self.num * self.size} "
                             f"numbers, got {d}")
        cond = self.actions(actions, (b, t))
        if future is not None:
            if self.future is None:
                raise WmkitError("this objects predictor imagines one future (model.object_futures=1); pass no future index")
            cond = cond + self.future[future][:, None]
        out, h = [], state
        for i in range(t):
            nxt, h = self._step(z[:, i], cond[:, i], h)
            out.append(nxt)
        return torch.stack(out, 1), h

    def step(self, z: torch.Tensor, action: torch.Tensor, state=None, future: torch.Tensor | None = None):
        """One step: latent ``(B, D)`` and action ``(B, A)`` with the states so far -> (next latent, new states)."""
        out, state = self.run(z[:, None], action[:, None], state, future)
        return out[:, 0], state
