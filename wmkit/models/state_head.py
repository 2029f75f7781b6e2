"""The readout from a latent to named state variables (``state_weight``): part of a world model, saved with it."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import WmkitError


class StateHead(nn.Module):
    """A readout from a latent to named state variables, for ``state_weight``.

    It predicts *features* of the state, standardised: each variable as it is, except angles, which
    are read as their cosine and sine (an angle that wraps has no mean). ``columns`` are the
    variables' positions in the training data's state vector, and ``mean`` / ``std`` the features'
    statistics over it; both are set by ``wmkit train`` (:meth:`fit_statistics`) and saved with the
    weights.

    On a latent map (``grid`` > 0) the head first runs three 3x3 convolutions over the map (with each
    cell's position as two more channels), then the MLP: an object's orientation is a pattern over a
    few neighbouring cells wherever the object is, which a convolution learns once for every place.
    On push-t's 8x8 map the block's angle reads to a median 1 degree this way (9,000 steps) and 68
    degrees with the MLP alone (BENCHMARKS.md)."""

    def __init__(self, latent_dim: int, names, angles=(), width: int = 256, grid: int = 0, conv_width: int = 64):
        super().__init__()
        self.names, angles = tuple(names), set(angles)
        unknown = sorted(angles - set(self.names))
        if unknown:
            raise WmkitError(f"model.state_angles names {unknown}, which are not among model.state_names {list(self.names)}")
        self.angle = [n in angles for n in self.names]
        n_feat = sum(2 if a else 1 for a in self.angle)
        self.register_buffer("columns", torch.arange(len(self.names)))
        self.register_buffer("mean", torch.zeros(n_feat))
        self.register_buffer("std", torch.ones(n_feat))
        # the spread of each feature's change over one model step in the training data (train_config.state_scale
        # 'change'); set from the data at every start of training, so not saved
        self.register_buffer("change_std", torch.ones(n_feat), persistent=False)
        self.grid = int(grid)
        if self.grid:
            if latent_dim % (self.grid * self.grid):
                raise WmkitError(f"a {latent_dim}-number latent is not a {self.grid}x{self.grid} map")
            self.cell = latent_dim // (self.grid * self.grid)
            ramp = torch.linspace(-1.0, 1.0, self.grid)
            self.register_buffer("coords", torch.stack(torch.meshgrid(ramp, ramp, indexing="xy"))[None], persistent=False)
            self.conv = nn.Sequential(nn.Conv2d(self.cell + 2, conv_width, 3, padding=1), nn.GELU(),
                                      nn.Conv2d(conv_width, conv_width, 3, padding=1), nn.GELU(),
                                      nn.Conv2d(conv_width, conv_width, 3, padding=1), nn.GELU(), nn.Flatten())
            latent_dim = conv_width * self.grid * self.grid
        else:
            self.conv = None
        self.net = nn.Sequential(nn.Linear(latent_dim, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                                 nn.Linear(width, n_feat))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Latents ``(..., D)`` -> standardised state features ``(..., F)``."""
        if self.conv is None:
            return self.net(z)
        lead = z.shape[:-1]
        x = z.reshape(-1, self.grid, self.grid, self.cell).permute(0, 3, 1, 2)  # cells row by row, as the map lists them
        x = torch.cat([x, self.coords.expand(len(x), -1, -1, -1)], 1)
        out = self.net(self.conv(x))
        return out.view(*lead, out.shape[-1])

    def raw_features(self, state: torch.Tensor) -> torch.Tensor:
        """The data's state vectors ``(..., S_data)`` -> unstandardised features ``(..., F)``."""
        cols = state[..., self.columns].float()
        parts = []
        for i, is_angle in enumerate(self.angle):
            x = cols[..., i : i + 1]
            parts += [torch.cos(x), torch.sin(x)] if is_angle else [x]
        return torch.cat(parts, -1)

    def features(self, state: torch.Tensor) -> torch.Tensor:
        """The data's state vectors -> the standardised features the head is trained to output."""
        return (self.raw_features(state) - self.mean) / self.std

    def to_state(self, feats: torch.Tensor) -> torch.Tensor:
        """Standardised features ``(..., F)`` -> the variables ``(..., len(names))`` (angles by atan2)."""
        x = feats * self.std + self.mean
        out, j = [], 0
        for is_angle in self.angle:
            out.append(torch.atan2(x[..., j + 1], x[..., j]) if is_angle else x[..., j])
            j += 2 if is_angle else 1
        return torch.stack(out, -1)

    @torch.no_grad()
    def fit_statistics(self, columns, states: torch.Tensor) -> None:
        """Set the variables' ``columns`` in the data's state vector and the features' statistics over
        ``states`` ``(N, S_data)``."""
        self.columns.copy_(torch.as_tensor(columns, dtype=torch.long))
        raw = self.raw_features(states)
        self.mean.copy_(raw.mean(0))
        self.std.copy_(raw.std(0).clamp_min(1e-6))

    @torch.no_grad()
    def fit_change(self, episodes, frame_skip: int) -> None:
        """Set ``change_std`` from the data's state vectors, one ``(T, S_data)`` tensor per episode: the spread
        of every feature's change over ``frame_skip`` steps (angles as their cosine and sine)."""
        steps = [f[frame_skip:] - f[:-frame_skip] for f in map(self.raw_features, episodes) if len(f) > frame_skip]
        if steps:
            self.change_std.copy_(torch.cat(steps).std(0).clamp_min(1e-6))
