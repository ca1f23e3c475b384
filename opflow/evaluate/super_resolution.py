"""Super-resolution that means something: on a grid finer than the training grid, the error
split at the band the training grid resolves, beside the baseline "predict on the training grid,
then interpolate" (PDEBench and The Well report such band errors).

Three kinds of grid, one recipe: Fourier modes on periodic grids, cosine modes on closed grids
(both boundaries among the points, as Darcy data: the Fourier modes of the even extension),
spherical harmonic degrees on the sphere.
"""

from __future__ import annotations

import dataclasses

import torch

from opflow.evaluate.metrics import band_split, sphere_band_split
from opflow.norms import per_variable, relative_lp_per_sample
from opflow.spectral import cosine_resample, fourier_resample
from opflow.spectral.sphere import sphere_resample

__all__ = ["Bands", "super_resolution", "super_resolution_lines"]


@dataclasses.dataclass(frozen=True)
class Bands:
    """The band a coarser grid resolves, on one kind of grid: ``"periodic"`` (Fourier modes),
    ``"closed"`` (both boundaries among the points: cosine modes) or a sphere grid kind
    (harmonic degrees)."""

    space: str

    @property
    def sphere(self) -> bool:
        return self.space not in ("periodic", "closed")

    def resample(self, x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """Band-limited interpolation of ``x`` ``(B, C, *s)`` onto ``shape``."""
        if self.sphere:
            return sphere_resample(x, tuple(shape), self.space)
        return (fourier_resample if self.space == "periodic" else cosine_resample)(x, shape)

    def restrict(self, x: torch.Tensor, band: tuple[int, ...]) -> torch.Tensor:
        """The input ``x`` on the training grid: its point values where the training grid's
        points are among this grid's (what a subsampled training file holds for the same
        state), band-limited resampling otherwise (and always on the sphere, whose multi-grid
        files hold truncated spectra)."""
        if self.sphere:
            return self.resample(x, band)
        steps = []
        for n, m in zip(x.shape[2:], band):
            fine, coarse = (n - 1, m - 1) if self.space == "closed" else (n, m)
            if fine % coarse:
                return self.resample(x, band)
            steps.append(fine // coarse)
        return x[(..., *(slice(None, None, step) for step in steps))]

    def split(self, pred: torch.Tensor, truth: torch.Tensor, band: tuple[int, ...]):
        """``(in band, above band)`` relative errors per sample."""
        if self.sphere:
            return sphere_band_split(pred, truth, band, self.space)
        return band_split(pred, truth, band, periodic=self.space == "periodic")


def super_resolution(surrogate, dataset, batch_size, pred, truth, training_grid, bands) -> dict:
    """On a grid finer than the training grid: the model's relative L2 error split into the band
    the training grid resolves and the band above it (``bands``, a :class:`Bands`: Fourier
    modes on periodic grids, cosine modes on closed ones, harmonic degrees on the sphere),
    beside the baseline that predicts on the training grid and interpolates (band-limited) to
    this one. A model whose error above the band is not at least 5% below the baseline's adds
    nothing an interpolation would not."""
    band, fine = tuple(training_grid.sizes), tuple(truth.shape[2:])
    preds = []
    with torch.no_grad():
        for indices in torch.arange(len(dataset)).split(batch_size):
            x, y = dataset.batch(indices)
            coarse = surrogate.predict(bands.restrict(x, band)).to("cpu", y.dtype)
            preds.append(bands.resample(coarse, fine))
    baseline = torch.cat(preds)
    n_vars = len(surrogate.task.output_variables)

    def split(prediction, part):
        return (
            per_variable(lambda p, t: bands.split(p, t, band)[part], n_vars)(prediction, truth)
            .mean()
            .item()
        )

    model_above, baseline_above = split(pred, 1), split(baseline, 1)
    return {
        "training_grid": list(band),
        "truth_above_band": split(torch.zeros_like(truth), 1),  # the detail there is to find
        "rel_l2_in_band": split(pred, 0),
        "rel_l2_above_band": model_above,
        "baseline_rel_l2": per_variable(relative_lp_per_sample, n_vars)(baseline, truth)
        .mean()
        .item(),
        "baseline_in_band": split(baseline, 0),
        "baseline_above_band": baseline_above,
        # 5% lower at least: a tie within rounding is no super-resolution
        "beats_interpolation_above_band": model_above < 0.95 * baseline_above,
    }


def super_resolution_lines(sr: dict, grid: list[int]) -> list[str]:
    """The table lines of one grid's :func:`super_resolution` result, with the verdict."""
    above = sr["truth_above_band"]
    if above < 1e-3:
        verdict = (
            f"the truth has {above:.1e} of its norm above the band: this grid shows "
            "consistency, not super-resolution"
        )
    elif sr["beats_interpolation_above_band"]:
        ratio = sr["rel_l2_above_band"] / sr["baseline_above_band"]
        verdict = f"better than interpolation above the band ({ratio:.2f}x its error)"
    else:
        verdict = (
            f"NO BETTER than interpolation above the band (the truth has {above:.1e} of its "
            "norm there)"
        )
    coarse = "x".join(map(str, sr["training_grid"]))
    return [
        f"  {'x'.join(map(str, grid))}, error in / above the {coarse} training band: "
        f"model {sr['rel_l2_in_band']:.4f} / {sr['rel_l2_above_band']:.4f}; predict at "
        f"{coarse} and interpolate {sr['baseline_in_band']:.4f} / "
        f"{sr['baseline_above_band']:.4f} (total {sr['baseline_rel_l2']:.4f})",
        f"    {verdict}",
    ]
