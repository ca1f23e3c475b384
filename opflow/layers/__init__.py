"""Building blocks shared by the models (pointwise maps, embeddings, padding, multigrid)."""

from opflow.layers.channel_mlp import ChannelLinear, ChannelMLP, SoftGating, make_skip
from opflow.layers.embeddings import GridEmbedding
from opflow.layers.multigrid import MultigridConv
from opflow.layers.padding import DomainPadding

__all__ = [
    "ChannelLinear",
    "ChannelMLP",
    "DomainPadding",
    "GridEmbedding",
    "MultigridConv",
    "SoftGating",
    "make_skip",
]
