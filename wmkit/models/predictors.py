"""Action-conditioned predictors: latents ``(B, T, D)`` and actions ``(B, T, A)`` -> the next
latent at every position, ``(B, T, D)``; output ``t`` depends only on latents and actions ``<= t``.

- ``TransformerPredictor``: causal self-attention over the history; each block is modulated by
  the action of its own time step through adaptive LayerNorm with zero-initialised gates
  (adaLN-Zero, Peebles & Xie 2023, "Scalable Diffusion Models with Transformers", sec. 3.2).
- ``MLPPredictor``: Markov, ``z_t+1 = z_t + f(z_t, a_t)``; the cheapest for planning on a CPU.
- ``GRUPredictor``: a recurrent alternative, causal by construction.
- ``ConvPredictor``: for per-region latents (``model.grid``): a small residual CNN over the
  latent map, so content moves between neighbouring cells and a static region costs nothing.
- ``ConvGRUPredictor``: the latent map read one frame at a time into a recurrent hidden map (a
  convolutional GRU), so what is no longer in view (a ball behind a screen) can be carried along,
  a cell or so per step, instead of being extrapolated at once from a stack of old maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import ChannelNorm


def _zero_linear(c_in: int, c_out: int) -> nn.Linear:
    """The output layer of a residual predictor, zero-initialised: an untrained predictor copies the
    last latent (the copy-last baseline) instead of adding noise it must first unlearn."""
    layer = nn.Linear(c_in, c_out)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class ActionEncoder(nn.Module):
    """Actions ``(B, T, A)`` -> conditioning vectors ``(B, T, width)``; a learned constant for A = 0."""

    def __init__(self, action_dim: int, width: int):
        super().__init__()
        self.action_dim = action_dim
        if action_dim > 0:
            self.mlp = nn.Sequential(nn.Linear(action_dim, width), nn.SiLU(), nn.Linear(width, width))
        else:
            self.const = nn.Parameter(torch.zeros(width))

    def forward(self, actions: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        if self.action_dim == 0:
            return self.const.expand(*shape, -1)
        return self.mlp(actions.float())


class AdaLNBlock(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * width, width))
        self.dropout = dropout
        # shift, scale and gate for both sub-layers from the step's action; zero init makes every
        # block start as the identity (adaLN-Zero)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.modulation[1].weight)
        nn.init.zeros_(self.modulation[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(cond).chunk(6, dim=-1)
        h = self.norm1(x) * (1 + scale1) + shift1
        q, k, v = self.qkv(h).view(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        x = x + gate1 * self.proj(attn.transpose(1, 2).reshape(b, t, w))
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.mlp(h)


class TransformerPredictor(nn.Module):
    def __init__(self, embed_dim: int, action_dim: int, width: int, depth: int, heads: int, history: int, dropout: float,
                 deltas: bool = False):
        super().__init__()
        self.history = history
        self.inp = nn.Linear(embed_dim, width)
        # optional second input: z_t - z_t-1 (zero for the first latent of a window), so that motion
        # is an input rather than something attention must first learn to subtract
        self.inp_delta = nn.Linear(embed_dim, width) if deltas else None
        self.pos = nn.Parameter(torch.zeros(1, history, width))
        self.actions = ActionEncoder(action_dim, width)
        self.blocks = nn.ModuleList(AdaLNBlock(width, heads, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.out = _zero_linear(width, embed_dim)

    def forward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        b, t, _ = z.shape
        if t > self.history:
            raise ValueError(f"the transformer predictor attends to at most {self.history} latents, got {t}")
        cond = self.actions(actions, (b, t))
        x = self.inp(z) + self.pos[:, :t]
        if self.inp_delta is not None:
            x = x + self.inp_delta(torch.cat([torch.zeros_like(z[:, :1]), z[:, 1:] - z[:, :-1]], dim=1))
        for block in self.blocks:
            x = block(x, cond)
        return z + self.out(self.norm(x))  # predict the change: the next latent is near the last


class MLPPredictor(nn.Module):
    """The next latent from the last ``history`` latents (concatenated) and the action. One latent is
    Markov in what the frame shows; two also give velocity (a torque-driven arm), still one MLP
    call per imagined step, which keeps CEM cheap on a CPU."""

    def __init__(self, embed_dim: int, action_dim: int, width: int, depth: int, dropout: float, history: int = 1):
        super().__init__()
        self.history = int(history)
        self.actions = ActionEncoder(action_dim, width)
        layers, c = [], embed_dim * self.history + width
        for _ in range(max(depth, 1)):
            layers += [nn.Linear(c, width), nn.LayerNorm(width), nn.GELU(), nn.Dropout(dropout)]
            c = width
        self.mlp = nn.Sequential(*layers, _zero_linear(width, embed_dim))

    def forward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        cond = self.actions(actions, z.shape[:2])
        context = z
        if self.history > 1:  # oldest first; before the first latent, the scene is taken as still
            t = z.shape[1]
            padded = torch.cat([z[:, :1].expand(-1, self.history - 1, -1), z], dim=1)
            context = torch.cat([padded[:, i : i + t] for i in range(self.history)], dim=-1)
        return z + self.mlp(torch.cat([context, cond], dim=-1))


class GRUPredictor(nn.Module):
    def __init__(self, embed_dim: int, action_dim: int, width: int, depth: int, history: int, dropout: float):
        super().__init__()
        self.history = history
        self.actions = ActionEncoder(action_dim, width)
        self.gru = nn.GRU(embed_dim + width, width, num_layers=max(depth, 1), batch_first=True,
                          dropout=dropout if depth > 1 else 0.0)
        self.out = _zero_linear(width, embed_dim)

    def forward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.run(z, actions)[0]

    def run(self, z: torch.Tensor, actions: torch.Tensor, state=None):
        """The recurrence over a window ``(B, T, D)`` from the state after the steps before (``None``
        at the start) -> (next latents ``(B, T, D)``, the state after the window). Running a window
        in two parts, the second from the first's state, gives exactly :meth:`forward`'s outputs."""
        cond = self.actions(actions, z.shape[:2])
        h, state = self.gru(torch.cat([z, cond], dim=-1), state)
        return z + self.out(h), state

    def step(self, z: torch.Tensor, action: torch.Tensor, state=None):
        """One step of the recurrence: latent ``(B, D)`` and action ``(B, A)`` with the state after
        the steps before (``None`` at the start) -> (next latent, new state)."""
        out, state = self.run(z[:, None], action[:, None], state)
        return out[:, 0], state


def _map_blocks(width: int, count: int) -> nn.ModuleList:
    """Residual 3x3 blocks over a latent map, normalised per cell (ChannelNorm), so that what
    happens far away stays far away."""
    return nn.ModuleList(nn.Sequential(ChannelNorm(width), nn.GELU(), nn.Conv2d(width, width, 3, padding=1))
                         for _ in range(count))


def _map_out(width: int, cell_dim: int) -> nn.Sequential:
    """Each cell's change, zero-initialised: an untrained predictor copies the last map."""
    out = nn.Sequential(ChannelNorm(width), nn.GELU(), nn.Conv2d(width, cell_dim, 1))
    nn.init.zeros_(out[-1].weight)
    nn.init.zeros_(out[-1].bias)
    return out


def _check_map(d: int, grid: int, cell: int, what: str) -> None:
    if d != grid * grid * cell:
        raise ValueError(f"the {what} predictor reads {grid}x{grid} maps of {cell} channels ({grid * grid * cell} numbers), "
                         f"got latents of {d}")


class ConvPredictor(nn.Module):
    """Next latent *map* from the last ``history`` maps and the action. A latent ``(B, T, G*G*C)``
    is read as a ``G x G`` map of ``C``-channel cells (cell-major, as the encoder writes it); the
    maps of the history are stacked on channels (oldest first, the first repeated before the
    window), the action enters as a per-channel bias, and residual 3x3 convolutions predict each
    cell's change. Output ``t`` sees maps and actions ``<= t`` only.

    With ``coords`` the action is read *per cell*, with the cell's position: a small per-cell MLP of
    (action embedding, cell x, cell y). Convolutions are blind to where a cell is, so without it an
    action that names a place (push-t's target position of the agent) cannot say which cells move
    toward it; with it each cell can relate the action to itself."""

    def __init__(self, cell_dim: int, grid: int, action_dim: int, width: int, depth: int, history: int,
                 coords: bool = False):
        super().__init__()
        self.cell, self.grid, self.history, self.width = cell_dim, grid, int(history), width
        self.actions = ActionEncoder(action_dim, width)
        self.coords = bool(coords)
        if self.coords:
            axis = torch.linspace(-1.0, 1.0, grid)
            ys, xs = torch.meshgrid(axis, axis, indexing="ij")
            self.register_buffer("cell_xy", torch.stack([xs, ys])[None], persistent=False)  # (1, 2, G, G)
            self.where = nn.Sequential(nn.Conv2d(width + 2, width, 1), nn.GELU(), nn.Conv2d(width, width, 1))
        self.inp = nn.Conv2d(cell_dim * self.history, width, 3, padding=1)
        self.blocks = _map_blocks(width, max(depth, 1))
        self.out = _map_out(width, cell_dim)

    def forward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        b, t, d = z.shape
        g, c = self.grid, self.cell
        _check_map(d, g, c, "conv")
        maps = z.view(b, t, g, g, c)
        padded = torch.cat([maps[:, :1].expand(-1, self.history - 1, -1, -1, -1), maps], dim=1)
        context = torch.cat([padded[:, i : i + t] for i in range(self.history)], dim=-1)  # (B, T, G, G, C*h)
        x = self.inp(context.reshape(b * t, g, g, -1).permute(0, 3, 1, 2))
        act = self.actions(actions, (b, t)).reshape(b * t, self.width, 1, 1)
        if self.coords:  # the action as each cell sees it from where it is
            here = torch.cat([act.expand(-1, -1, g, g), self.cell_xy.to(act.dtype).expand(b * t, -1, -1, -1)], 1)
            act = act + self.where(here)
        x = x + act
        for block in self.blocks:
            x = x + block(x)
        change = self.out(x).permute(0, 2, 3, 1).reshape(b, t, d)
        return z + change


class ConvGRUPredictor(nn.Module):
    """Next latent map from a recurrent hidden map (a convolutional GRU over the ``G x G`` cells).

    Each frame's map (and the action, as a per-channel bias) enters through a 3x3 convolution; the
    hidden map is updated by a GRU whose gates are 3x3 convolutions over the input and the previous
    hidden map, so what it holds can move about a cell per step; ``depth - 1`` residual 3x3 blocks
    read the hidden map (plus the frame's input) and predict each cell's change. Output ``t`` sees
    maps and actions ``<= t`` (the recurrence starts at the first latent given, from an empty hidden
    map), so a window longer than ``history`` is refused by :meth:`WorldModel.predict` as for the
    other recurrent predictors.

    Why recurrent: an object that is hidden leaves no trace in the latest maps. The stacked-history
    :class:`ConvPredictor` must then infer where it is now from where it was seen several frames
    ago, a jump of several cells that its few 3x3 layers barely reach. Here the hidden map can
    carry the object one step at a time, which is what local convolutions do well."""

    def __init__(self, cell_dim: int, grid: int, action_dim: int, width: int, depth: int, history: int):
        super().__init__()
        self.cell, self.grid, self.history, self.width = cell_dim, grid, int(history), width
        self.actions = ActionEncoder(action_dim, width)
        self.inp = nn.Conv2d(cell_dim, width, 3, padding=1)
        self.gates = nn.Conv2d(2 * width, 2 * width, 3, padding=1)  # update and reset
        self.candidate = nn.Conv2d(2 * width, width, 3, padding=1)
        self.blocks = _map_blocks(width, max(depth - 1, 0))
        self.out = _map_out(width, cell_dim)

    def _inputs(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, T, G*G*C)`` and actions -> the GRU's input maps ``(B, T, width, G, G)``."""
        b, t, d = z.shape
        g, c = self.grid, self.cell
        _check_map(d, g, c, "conv-GRU")
        maps = z.reshape(b * t, g, g, c).permute(0, 3, 1, 2)
        x = self.inp(maps) + self.actions(actions, (b, t)).reshape(b * t, self.width, 1, 1)
        return x.view(b, t, self.width, g, g)

    def _update(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        update, reset = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        fresh = torch.tanh(self.candidate(torch.cat([x, reset * h], 1)))
        return h + update * (fresh - h)

    def _change(self, y: torch.Tensor) -> torch.Tensor:
        """Hidden plus input maps ``(N, width, G, G)`` -> each cell's change ``(N, G*G*C)``."""
        for block in self.blocks:
            y = y + block(y)
        return self.out(y).permute(0, 2, 3, 1).reshape(len(y), -1)

    def forward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return self.run(z, actions)[0]

    def run(self, z: torch.Tensor, actions: torch.Tensor, state=None):
        """The recurrence over a window ``(B, T, G*G*C)`` from the hidden map after the steps before
        (``None`` at the start) -> (next latents ``(B, T, G*G*C)``, the hidden map after the window).
        Running a window in two parts, the second from the first's hidden map, gives exactly
        :meth:`forward`'s outputs."""
        b, t, d = z.shape
        x = self._inputs(z, actions)
        h = x.new_zeros(b, self.width, self.grid, self.grid) if state is None else state
        states = []
        for i in range(t):
            h = self._update(x[:, i], h)
            states.append(h)
        y = (torch.stack(states, 1) + x).reshape(b * t, self.width, self.grid, self.grid)
        return z + self._change(y).view(b, t, d), h

    def step(self, z: torch.Tensor, action: torch.Tensor, state=None):
        """One step of the recurrence: latent ``(B, G*G*C)`` and action ``(B, A)`` with the hidden map
        after the steps before (``None`` at the start) -> (next latent, new hidden map)."""
        out, state = self.run(z[:, None], action[:, None], state)
        return out[:, 0], state
