r"""Pointwise layers for fields on the sphere: a position embedding and the spectral batch norm.

Both use the grid's quadrature, so they mean the same thing on every grid kind and resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from opflow.spectral.cache import ConstantCache
from opflow.spectral.sphere import SphereGrid

__all__ = ["SphereDisco", "SphereEmbedding", "SphericalBatchNorm", "sphere_mean"]


def sphere_mean(x: torch.Tensor, grid: SphereGrid) -> torch.Tensor:
    r"""Area mean :math:`\frac{1}{4\pi}\int f\,d\Omega` over the last two axes of
    ``(..., nlat, nlon)`` -> ``(...)``."""
    w = grid.quadrature_weights.to(dtype=x.dtype, device=x.device) / 2.0
    return (x.mean(dim=-1) * w).sum(dim=-1)


class SphereEmbedding(nn.Module):
    """Append the unit vector ``(x, y, z)`` of each grid point: ``(B, C, nlat, nlon) ->
    (B, C + 3, nlat, nlon)``. Gives pointwise layers the latitude (Coriolis, insolation) at the
    price of rotation equivariance."""

    channels = 3

    def __init__(self, grid_kind: str = "equiangular"):
        super().__init__()
        self.grid_kind = grid_kind

    def forward(
        self,
        x: torch.Tensor,
        grid: tuple[int, int] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """``x`` is the whole field, or (``grid``, ``rows``) latitudes ``rows`` of a field on
        the ``(nlat, nlon)`` grid: the shard of one process when it is split across several."""
        nlat, nlon = grid if grid is not None else x.shape[-2:]
        sphere = SphereGrid(nlat, nlon, self.grid_kind)
        rows = rows if rows is not None else (0, nlat)
        colatitudes = sphere.colatitudes[rows[0] : rows[1]]
        theta = colatitudes.to(dtype=x.dtype, device=x.device)[:, None]
        lam = torch.deg2rad(sphere.longitudes_deg).to(dtype=x.dtype, device=x.device)[None, :]
        shape = (len(colatitudes), nlon)
        xyz = torch.stack(
            (theta.sin() * lam.cos(), theta.sin() * lam.sin(), theta.cos().expand(shape))
        )
        return torch.cat((x, xyz[None].expand(x.shape[0], -1, -1, -1)), dim=1)


class SphericalBatchNorm(nn.Module):
    r"""Batch norm in the spectral sense (Esteves et al. 2023), computed in space by Parseval.

    Only the degree-0 coefficient (the area mean) is centred; the scale is the RMS over the
    sphere of the centred field, i.e. the square root of its total spectral power. Statistics are
    per channel over the batch; running averages are used in eval mode. Higher degrees are never
    shifted, so the layer commutes with rotations.
    """

    def __init__(
        self,
        channels: int,
        grid_kind: str = "equiangular",
        momentum: float = 0.1,
        eps: float = 1e-5,
        affine: bool = True,
    ):
        super().__init__()
        self.grid_kind, self.momentum, self.eps = grid_kind, momentum, eps
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        if affine:
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))
        else:
            self.weight = self.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = SphereGrid(x.shape[-2], x.shape[-1], self.grid_kind)
        if self.training:
            mean = sphere_mean(x, grid).mean(0)  # (C,)
            var = sphere_mean((x - mean[:, None, None]) ** 2, grid).mean(0)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(var.detach(), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        scale = torch.rsqrt(var + self.eps)
        if self.weight is not None:
            scale = scale * self.weight
        y = (x - mean[:, None, None]) * scale[:, None, None]
        return y if self.bias is None else y + self.bias[:, None, None]


class SphereDisco(nn.Module):
    r"""Local integral kernel on the sphere (DISCO), any grid, one set of weights.

    :math:`(k \star x)(p) = \int_{|q - p| < r} \kappa(q; p)\, x(q)\, d\Omega(q)` with
    :math:`\kappa = \sum_i \theta_i \psi_i` over torch-harmonics' piecewise-linear basis inside the
    geodesic radius ``radius`` (radians), integrated with the grid's quadrature: torch-harmonics'
    ``DiscreteContinuousConvS2`` computes it. That module is built for one grid; here the
    learned :math:`\theta` (``weight``, ``(out, in, n_basis)``) lives on this module and a
    torch-harmonics convolution is built (and cached) per input grid, so the same filter — with
    the same physical radius — applies at every resolution.

    Shapes: ``(B, in, nlat, nlon) -> (B, out, nlat, nlon)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        radius: float,
        kernel_shape: int | tuple[int, int] = (3, 4),
        grid_kind: str = "equiangular",
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.radius, self.kernel_shape, self.grid_kind = float(radius), kernel_shape, grid_kind
        probe = self._build(9, 16)  # only for torch-harmonics' basis size and initialisation
        self.weight = nn.Parameter(probe.weight.detach().clone())
        self._convs = ConstantCache(maxsize=8)  # per grid; rebuilt, never saved

    def _build(self, nlat: int, nlon: int) -> nn.Module:
        from torch_harmonics import DiscreteContinuousConvS2

        return DiscreteContinuousConvS2(
            self.in_channels,
            self.out_channels,
            (nlat, nlon),
            (nlat, nlon),
            self.kernel_shape,
            grid_in=self.grid_kind,
            grid_out=self.grid_kind,
            bias=False,
            theta_cutoff=self.radius,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self._convs.get(
            (x.shape[-2], x.shape[-1], x.device, x.dtype),
            lambda: self._build(x.shape[-2], x.shape[-1]).to(device=x.device, dtype=x.dtype),
        )
        del conv.weight  # use this module's parameter (and its gradient), not the probe's
        conv.weight = self.weight
        return conv(x)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, radius={self.radius:.4g} rad, "
            f"kernel_shape={self.kernel_shape}, grid={self.grid_kind!r}"
        )
