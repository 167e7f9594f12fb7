"""Embedding pictures: a 2-D principal-component projection of token vectors, labelled with their words.

Two directions of a 50- or 300-dimensional space show only its largest variation, but words used alike
(numbers, names, pronouns) already cluster in it after a little training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from zoo.pictures._common import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["pca_2d", "plot_embeddings", "token_embedding"]


def token_embedding(model: nn.Module) -> nn.Embedding:
    """The model's first ``nn.Embedding`` in module order: the token table in the zoo's text models (word2vec's
    input vectors, a Transformer's or an RNN's token embedding; position tables are built after it)."""
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            return m
    raise ValueError(f"{type(model).__name__} has no nn.Embedding: embedding pictures are for token models")


def pca_2d(vectors: torch.Tensor) -> torch.Tensor:
    """(N, D) vectors -> (N, 2): their centred coordinates along the two principal directions (the top two right
    singular vectors of the centred matrix), the first with the largest variance."""
    if vectors.dim() != 2 or len(vectors) < 2:
        raise ValueError(f"pca_2d takes an (N, D) matrix with N >= 2, got shape {tuple(vectors.shape)}")
    x = vectors.detach().double()
    x = x - x.mean(0)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)  # (min(N, D), D): rows are the principal directions
    return (x @ vh[:2].T).float()  # (N, D) @ (D, 2) -> (N, 2)


def plot_embeddings(vectors: torch.Tensor, labels: Sequence[str], *, title: str = "token embeddings") -> Figure:
    """A scatter of :func:`pca_2d` of ``vectors`` (N, D), each point labelled with its word."""
    if len(labels) != len(vectors):
        raise ValueError(f"{len(vectors)} vectors need as many labels, got {len(labels)}")
    xy = pca_2d(vectors).numpy()
    fig = new_figure(8, 7)
    ax = fig.subplots()
    ax.scatter(xy[:, 0], xy[:, 1], s=8, alpha=0.6)
    for (x, y), label in zip(xy, labels, strict=True):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(3, 2), fontsize=7)
    ax.set_xlabel("principal component 1")
    ax.set_ylabel("principal component 2")
    ax.set_title(f"{title} (2-D PCA)", fontsize=9)
    ax.grid(alpha=0.3)
    return fig
