"""word2vec skip-gram with negative sampling (Mikolov et al. 2013): one static vector per word.

The seeds' counterpoint to attention: a word has the same vector in every context ("bank" of a river
and of money), where a Transformer's representation of it changes with the sentence.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.registry import register_model


class SkipGram(nn.Module):
    """Skip-gram (Mikolov et al. 2013): scores u_center . v_context for true and noise context words.

    ``forward`` returns the logits of the true pairs (B,) and of the negative pairs (B, K); the task turns
    them into the negative-sampling loss. ``most_similar`` queries the input vectors by cosine similarity.
    """

    def __init__(self, *, vocab_size: int, embed_dim: int) -> None:
        super().__init__()
        self.in_embed = nn.Embedding(vocab_size, embed_dim)
        self.out_embed = nn.Embedding(vocab_size, embed_dim)
        nn.init.uniform_(self.in_embed.weight, -0.5 / embed_dim, 0.5 / embed_dim)  # word2vec.c's init
        nn.init.zeros_(self.out_embed.weight)

    def forward(self, center: torch.Tensor, context: torch.Tensor,
                negatives: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.in_embed(center)  # (B, D)
        pos = (u * self.out_embed(context)).sum(-1)  # (B,)
        neg = torch.einsum("bd,bkd->bk", u, self.out_embed(negatives))  # (B, K)
        return pos, neg

    @torch.no_grad()
    def most_similar(self, ids: torch.Tensor, k: int) -> torch.return_types.topk:
        """The ``k`` nearest words of each id by cosine similarity of input vectors (itself excluded):
        ``.values`` (n, k) similarities, ``.indices`` (n, k) word ids."""
        w = F.normalize(self.in_embed.weight, dim=-1)  # (V, D)
        sims = w[ids] @ w.T  # (n, V)
        sims[torch.arange(len(ids), device=ids.device), ids] = float("-inf")
        return sims.topk(k, dim=-1)


def _example(batch: int) -> tuple[torch.Tensor, ...]:
    return torch.randint(0, 100, (batch,)), torch.randint(0, 100, (batch,)), torch.randint(0, 100, (batch, 5))


@register_model(family="word2vec", modality="text", tasks=("embed",), example=_example, paper="Mikolov et al. 2013")
def word2vec(*, vocab_size: int = 1000, embed_dim: int = 100) -> SkipGram:
    return SkipGram(vocab_size=vocab_size, embed_dim=embed_dim)
