"""Pictures a student would look at, for any zoo model (or one's own built from zoo layers): plain PyTorch and
matplotlib, each a function that returns a ``matplotlib.figure.Figure`` (``fig.savefig("x.png")``) and a
function that returns the numbers behind it.

- attention (:mod:`zoo.pictures.attention`): a ViT's class-token attention and attention rollout over its
  images; token-by-token matrices (a translation model's cross-attention, a language model's causal
  self-attention). The weights come from :func:`zoo.layers.capture_attention`;
- convolutions (:mod:`zoo.pictures.conv`): the first layer's kernels and its feature maps of one image;
- embeddings (:mod:`zoo.pictures.embeddings`): a 2-D PCA of token vectors with their words;
- learning curves of a run: :func:`zoo.plots.plot_learning_curves`.

The training app (``train.py``) writes them for a run with ``+callbacks/pictures=default``.
"""

from zoo.layers.attention import capture_attention
from zoo.pictures.attention import (
    ViTAttention,
    attention_rollout,
    attention_weights,
    plot_attention_matrices,
    plot_vit_attention,
    vit_attention,
)
from zoo.pictures.conv import feature_maps, first_conv, plot_feature_maps, plot_kernels
from zoo.pictures.embeddings import pca_2d, plot_embeddings, token_embedding

__all__ = [
    "ViTAttention",
    "attention_rollout",
    "attention_weights",
    "capture_attention",
    "feature_maps",
    "first_conv",
    "pca_2d",
    "plot_attention_matrices",
    "plot_embeddings",
    "plot_feature_maps",
    "plot_kernels",
    "plot_vit_attention",
    "token_embedding",
    "vit_attention",
]
