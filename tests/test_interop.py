"""neuraloperator -> opflow: over a matrix of dimensions x options, every model either converts
to parity (1e-5 relative, on an input the converter never saw) or is refused — never silently
wrong."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from neuralop.models import FNO as NeuralopFNO

from opflow.errors import ConfigError
from opflow.interop import PARITY_TOLERANCE, _verify, from_neuralop

# (n_modes, grid of the parity check) per dimension: even sizes on the axes before the last,
# where neuraloperator 2.0 itself is wrong for odd sizes (test_spectral_core.py's CASES)
DIMS = {1: ((8,), (27,)), 2: ((8, 6), (20, 17)), 3: ((4, 4, 4), (10, 12, 9))}
CONVERTS = {
    "defaults": {},
    "linear channel-MLP skip": {"channel_mlp_skip": "linear"},
    "identity channel-MLP skip": {"channel_mlp_skip": "identity"},
    "identity FNO skip": {"fno_skip": "identity"},
    "soft-gating FNO skip": {"fno_skip": "soft-gating"},
    "no channel MLP": {"use_channel_mlp": False},
    "no embedding": {"positional_embedding": None},
    "domain padding": {"domain_padding": 0.25},
    "Tucker rank 0.5": {"factorization": "tucker", "rank": 0.5},
    "Tucker, reconstructed": {
        "factorization": "tucker",
        "rank": 0.5,
        "implementation": "reconstructed",
    },  # fmt: skip
    "CP rank 0.5": {"factorization": "cp", "rank": 0.5},
    "TT rank 0.5": {"factorization": "tt", "rank": 0.5},
}
REFUSED = {
    "group norm": {"norm": "group_norm"},
    "instance norm": {"norm": "instance_norm"},
    "preactivation": {"preactivation": True},
    "separable": {"separable": True},
    "ReLU": {"non_linearity": F.relu},
}


def _theirs(dim: int, options: dict) -> NeuralopFNO:
    torch.manual_seed(dim)
    n_modes, _ = DIMS[dim]
    return NeuralopFNO(n_modes=n_modes, in_channels=2, out_channels=3, hidden_channels=8,
                       n_layers=2, **options)  # fmt: skip


@pytest.mark.parametrize("dim", sorted(DIMS))
@pytest.mark.parametrize("name", sorted(CONVERTS))
def test_supported_options_convert_to_parity(dim, name):
    theirs = _theirs(dim, CONVERTS[name])
    ours = from_neuralop(theirs)
    x = torch.randn(2, 2, *DIMS[dim][1])  # another grid than the converter's own check
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    error = ((got - expected).norm() / expected.norm()).item()
    assert error < PARITY_TOLERANCE, (name, dim, error)


@pytest.mark.parametrize("dim", sorted(DIMS))
@pytest.mark.parametrize("name", sorted(REFUSED))
def test_unsupported_options_are_refused(dim, name):
    try:
        theirs = _theirs(dim, REFUSED[name])
    except (ValueError, NotImplementedError, AssertionError) as err:  # neuraloperator's own
        pytest.skip(f"neuraloperator does not build {name} in {dim}-D: {err}")
    with pytest.raises(ConfigError, match="Cannot convert this neuraloperator model"):
        from_neuralop(theirs)


def test_neuraloperators_sfno_is_refused_with_the_reason():
    from neuralop.models import SFNO

    theirs = SFNO(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=8)
    with pytest.raises(ConfigError, match="SphericalConv.*opflow's SFNO"):
        from_neuralop(theirs)


def test_a_mismatch_is_refused_naming_the_first_differing_module():
    """Fail closed: whatever goes wrong in a conversion, the converted model is never
    returned if its outputs differ (here block 2's weights, altered after conversion)."""
    theirs = _theirs(2, {})
    ours = from_neuralop(theirs)
    with torch.no_grad():
        ours.blocks[1].conv.weight.mul_(1.5)
    with pytest.raises(ConfigError, match=r"first in the FNO blocks \(call 2\)"):
        _verify(theirs, ours)


@pytest.mark.parametrize("dim", sorted(DIMS))
@pytest.mark.parametrize(
    "options",
    [{}, {"channel_mlp_skip": "linear", "fno_skip": "soft-gating"}, {"domain_padding": 0.25},
     {"positional_embedding": None, "use_channel_mlp": False}],
    ids=["defaults", "skips", "padding", "bare"],
)  # fmt: skip
def test_opflow_fnos_go_to_neuraloperator_and_back(dim, options):
    from opflow.interop import to_neuralop
    from opflow.models import FNO

    torch.manual_seed(dim)
    ours = FNO(DIMS[dim][0], 2, 3, 8, n_layers=2, **options)
    theirs = to_neuralop(ours)
    x = torch.randn(2, 2, *DIMS[dim][1])
    with torch.no_grad():
        expected, got = ours(x), theirs(x)
        back = from_neuralop(theirs)(x)
    assert ((got - expected).norm() / expected.norm()).item() < PARITY_TOLERANCE
    assert ((back - expected).norm() / expected.norm()).item() < PARITY_TOLERANCE


def test_to_neuralop_refuses_what_neuraloperator_lacks():
    from opflow.interop import to_neuralop
    from opflow.models import FNO, LocalNO

    periodic = FNO((8, 8), 1, 1, 8, positional_embedding="periodic")
    with pytest.raises(ConfigError, match="periodic"):
        to_neuralop(periodic)
    with pytest.raises(ConfigError, match="LocalNO"):
        to_neuralop(LocalNO((8, 8), 1, 1, 8))
