"""Building blocks shared by the models (pointwise maps, embeddings, padding)."""

from opflow.layers.channel_mlp import ChannelLinear, ChannelMLP, SoftGating, make_skip
from opflow.layers.embeddings import GridEmbedding
from opflow.layers.padding import DomainPadding

__all__ = [
    "ChannelLinear",
    "ChannelMLP",
    "DomainPadding",
    "GridEmbedding",
    "SoftGating",
    "make_skip",
]
