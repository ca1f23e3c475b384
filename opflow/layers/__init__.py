"""Building blocks shared by the models (pointwise maps, embeddings, padding, local
kernels, multigrid)."""

from opflow.layers.channel_mlp import ChannelLinear, ChannelMLP, SoftGating, make_skip
from opflow.layers.differential import DifferentialConv
from opflow.layers.embeddings import GridEmbedding
from opflow.layers.multigrid import MultigridConv
from opflow.layers.padding import DomainPadding

__all__ = [
    "ChannelLinear",
    "ChannelMLP",
    "DifferentialConv",
    "DomainPadding",
    "GridEmbedding",
    "MultigridConv",
    "SoftGating",
    "make_skip",
]
