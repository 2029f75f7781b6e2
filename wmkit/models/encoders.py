"""Observation encoders: frames (plus depth and proprioception) -> one feature vector per frame.

Both encoders fuse the observation keys the same way: depth is stacked as a fourth image channel,
proprioception goes through a small MLP and is added to the pooled image feature. Normalisation
inside the encoder is per-sample (GroupNorm / LayerNorm), so an encoder never mixes samples and
gives the same result whatever the batch split across ranks.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import WmkitError


def pixels(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 frames (any leading shape) -> a new float tensor in [-1, 1]: what encoders read and decoders return."""
    return rgb.float().mul_(2.0 / 255.0).sub_(1.0)


def image_input(obs: dict[str, torch.Tensor], keys: tuple[str, ...]) -> torch.Tensor:
    """Frames ``(N, 3, H, W)`` uint8 (+ depth ``(N, 1, H, W)``) -> ``(N, C, H, W)`` float in ~[-1, 1]."""
    x = pixels(obs["rgb"])
    if "depth" in keys:
        x = torch.cat([x, obs["depth"].float().mul(2.0).sub(1.0)], dim=1)
    return x


class ProprioFusion(nn.Module):
    def __init__(self, proprio_dim: int, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(proprio_dim, width), nn.GELU(), nn.Linear(width, width))

    def forward(self, feature: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        return feature + self.mlp(proprio.float())


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of each pixel: unlike GroupNorm, it never mixes positions, so a
    change in one region leaves the features of distant regions exactly as they were."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _conv_block(c_in: int, c_out: int, local: bool = False) -> nn.Sequential:
    # one strided 3x3 convolution per stage: ~15M multiply-adds per 64x64 frame at channels=32,
    # a third of a two-convolution stage, which decides CPU training speed
    norm = ChannelNorm(c_out) if local else nn.GroupNorm(8 if c_out % 8 == 0 else 1, c_out)
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), norm, nn.GELU())


class SpatialKeypoints(nn.Module):
    """``K`` learned keypoints of a feature map: a 1x1 convolution scores every cell for each
    keypoint, a softmax over the cells turns the scores into a distribution, and its mean gives the
    keypoint's (x, y) in [-1, 1], read at sub-cell precision. A third number per keypoint, the
    log-sum-exp of its scores, says how strongly the feature is present (a hidden object has no
    peak). The output ``(N, 3K)`` holds coordinates that a linear probe, a predictor and a planning
    cost can use directly, where a flattened coarse map only holds them implicitly."""

    def __init__(self, c_in: int, num: int):
        super().__init__()
        self.score = nn.Conv2d(c_in, num, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        logits = self.score(x).float().flatten(2)  # (N, K, H*W)
        prob = logits.softmax(-1)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        kx = (prob * grid_x.reshape(1, 1, -1)).sum(-1)
        ky = (prob * grid_y.reshape(1, 1, -1)).sum(-1)
        presence = logits.logsumexp(-1) - math.log(h * w)
        return torch.cat([kx, ky, presence], 1)


class ConvEncoder(nn.Module):
    """Four stride-2 stages (64 -> 4 pixels at 64x64), then flatten and a linear map to ``out_dim``.
    With ``grid`` = G, only as many stages as reach a G x G map, and a 3x3 convolution to
    ``out_dim`` features per cell: ``(N, G*G, out_dim)``, one feature per image region.
    Flattening (not global pooling) keeps *where* things are, which the dynamics depend on. With
    ``keypoints`` > 0, :class:`SpatialKeypoints` of the second stage's map (16x16 at 64x64) join the
    flattened feature before the linear map: explicit positions of small objects."""

    KEYPOINT_STAGE = 1  # the second stage: fine enough for sub-cell positions, deep enough for parts

    def __init__(self, image_size: int, channels: int, out_dim: int, keys: tuple[str, ...], proprio_dim: int = 0,
                 keypoints: int = 0, grid: int = 0):
        super().__init__()
        if keypoints < 0:
            raise WmkitError(f"model.keypoints must be >= 0, got {keypoints}")
        self.keys, self.grid = keys, grid
        c_in = 3 + ("depth" in keys)
        widths = [channels, channels * 2, channels * 4, channels * 8]
        if grid:  # per-region latents: stop halving at a G x G map
            num_stages = (image_size // grid).bit_length() - 1
            if grid < 1 or image_size % grid or image_size // grid != 2**num_stages or not 1 <= num_stages <= 4:
                raise WmkitError(f"model.grid={grid} must divide the image size {image_size} by a power of two "
                                 f"between 2 and 16 (e.g. grid={image_size // 8} for 8x8-pixel cells)")
            if keypoints or "proprio" in keys:
                raise WmkitError("model.grid (per-region latents) works with rgb/depth alone; set model.keypoints=0 and obs_keys=rgb")
            widths = widths[:num_stages]
        stages, c = [], c_in
        for w in widths:
            stages.append(_conv_block(c, w, local=bool(grid)))  # per-region latents: no norm across positions
            c = w
        self.stages = nn.Sequential(*stages)
        side = image_size
        for _ in widths:
            side = (side + 1) // 2
        self.keypoints = SpatialKeypoints(widths[self.KEYPOINT_STAGE], keypoints) if keypoints else None
        # per-region latents: a 3x3 convolution lets each cell see its neighbours' features
        self.head = nn.Conv2d(c, out_dim, 3, padding=1) if grid else nn.Linear(c * side * side + 3 * keypoints, out_dim)
        self.proprio = ProprioFusion(proprio_dim, out_dim) if "proprio" in keys else None
        self.channels_last = False  # set by the trainer: ~25% faster convolutions on CPU

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        x = image_input(obs, self.keys)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        parts = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if self.keypoints is not None and i == self.KEYPOINT_STAGE:
                parts.append(self.keypoints(x))
        if self.grid:
            return self.head(x).flatten(2).transpose(1, 2)  # (N, G*G, out_dim), cell-major
        feature = self.head(torch.cat([x.flatten(1), *parts], 1) if parts else x.flatten(1))
        return feature if self.proprio is None else self.proprio(feature, obs["proprio"])


class ViTEncoder(nn.Module):
    """Patch tokens + learned positions -> pre-norm transformer -> attention pooling to one vector.
    The per-patch tokens stay available through ``tokens()`` for models that want them."""

    def __init__(self, image_size: int, patch_size: int, width: int, depth: int, out_dim: int,
                 keys: tuple[str, ...], proprio_dim: int = 0, heads: int = 4):
        super().__init__()
        if image_size % patch_size:
            raise WmkitError(f"ViT patch_size {patch_size} must divide the image size {image_size}")
        self.keys = keys
        c_in = 3 + ("depth" in keys)
        self.patchify = nn.Conv2d(c_in, width, patch_size, stride=patch_size)
        num_tokens = (image_size // patch_size) ** 2
        self.pos = nn.Parameter(torch.randn(1, num_tokens, width) * 0.02)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.pool_query = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.pool = nn.MultiheadAttention(width, heads, batch_first=True)
        self.head = nn.Linear(width, out_dim)
        self.proprio = ProprioFusion(proprio_dim, out_dim) if "proprio" in keys else None

    def tokens(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(N, num_patches, width)`` patch tokens."""
        x = self.patchify(image_input(obs, self.keys)).flatten(2).transpose(1, 2)
        return self.norm(self.blocks(x + self.pos))

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = self.tokens(obs)
        pooled, _ = self.pool(self.pool_query.expand(len(tokens), -1, -1), tokens, tokens, need_weights=False)
        feature = self.head(pooled[:, 0])
        return feature if self.proprio is None else self.proprio(feature, obs["proprio"])


class MapDecoder(nn.Module):
    """Latent map ``(N, G*G*C)`` (channels last) -> RGB frame in [-1, 1]: every cell paints its own
    ``image_size / G`` square patch from its latent and its eight neighbours' (a 3x3 convolution, then
    a 1x1 convolution to the patch's pixels). What a cell must hold to be decoded is what its region
    shows (a ball's colour, shape and place within the cell), which a decoder from the whole
    flattened map does not ask of any one cell."""

    def __init__(self, image_size: int, grid: int, cell: int, width: int = 64):
        super().__init__()
        if image_size % grid:
            raise WmkitError(f"model.grid={grid} must divide the image size {image_size}")
        self.grid, self.cell, self.patch = grid, cell, image_size // grid
        self.body = nn.Sequential(nn.Conv2d(cell, width, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(width, 3 * self.patch * self.patch, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        g, c = self.grid, self.cell
        if z.shape[-1] != g * g * c:
            raise WmkitError(f"the map decoder takes {g}x{g} cells of {c} numbers ({g * g * c}), got latents of {z.shape[-1]}")
        x = z.reshape(-1, g, g, c).permute(0, 3, 1, 2)
        return torch.tanh(F.pixel_shuffle(self.body(x), self.patch))


class PixelDecoder(nn.Module):
    """Latent -> RGB frame in [-1, 1], the mirror of :class:`ConvEncoder` (the pixel baseline, and the auxiliary reconstruction)."""

    def __init__(self, image_size: int, channels: int, in_dim: int):
        super().__init__()
        self.side = image_size // 16
        self.c = channels * 4
        self.fc = nn.Linear(in_dim, self.c * self.side * self.side)
        ups, c = [], self.c
        for w in (channels * 4, channels * 2, channels, channels):
            ups += [nn.ConvTranspose2d(c, w, 4, stride=2, padding=1), nn.GroupNorm(8 if w % 8 == 0 else 1, w), nn.GELU()]
            c = w
        self.ups = nn.Sequential(*ups)
        self.out = nn.Conv2d(c, 3, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z).view(len(z), self.c, self.side, self.side)
        return torch.tanh(self.out(self.ups(x)))
