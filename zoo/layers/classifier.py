"""The classifier surface users know from timm: ``get_classifier`` / ``reset_classifier`` / ``num_features``.

Every classifier in the zoo splits its ``forward`` in two, so that ``forward(x) == forward_head(forward_features(x))``:

- ``forward_features(x)``: the unpooled feature map (B, C, H, W) of a CNN, the tokens (B, N, D) of a ViT, or,
  for a sequence classifier, a :class:`SequenceFeatures` (per-position features and the padding mask that
  pooling needs);
- ``forward_head(x, pre_logits=False)``: pools, then applies the classifier; ``pre_logits=True`` stops before
  the last Linear and returns the (B, ``num_features``) pooled features (an embedding for retrieval or a
  linear probe).

:class:`ClassifierMixin` adds the rest once for every family: ``get_classifier()`` (the last Linear, the
module that maps ``num_features`` to logits), ``reset_classifier(num_classes)`` (a fresh Linear, or Identity
for 0: fine-tune on another label set, or use the model as a feature extractor) and ``num_classes``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class SequenceFeatures(NamedTuple):
    """What a sequence classifier's ``forward_features(tokens, padding_mask)`` returns for ``forward_head``.

    Pooling needs the mask (mean and max skip padding), and a recurrent ``pool="last"`` the final state, so
    both travel with the features: ``m.forward_head(m.forward_features(tokens, mask)) == m(tokens, mask)``.
    """

    features: torch.Tensor  # (B, T, F): the last layer's output at every position
    padding_mask: torch.Tensor | None = None  # (B, T), True at padding; None: no padding
    last: torch.Tensor | None = None  # (B, F): a recurrent core's final state (padding excluded); else None


class ClassifierMixin:
    """``get_classifier``, ``reset_classifier`` and ``num_classes`` for a module whose last Linear is ``head_path``.

    A family sets ``self.num_features`` (the head's input width) in ``__init__``, and, when its last Linear is
    not ``self.head``, the class attributes ``head_path`` (a dotted submodule path, e.g. ``"classifier.6"``, so
    parameter names and old checkpoints stay as they were) and ``head_bias``.
    """

    head_path: str = "head"
    head_bias: bool = True
    num_features: int

    def get_classifier(self) -> nn.Module:
        """The module that maps the (B, num_features) pooled features to logits."""
        return self.get_submodule(self.head_path)  # type: ignore[attr-defined]

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier by a fresh ``Linear(num_features, num_classes)``, or Identity when 0.

        The new layer follows the device and dtype of the old one (or of the model's parameters).
        """
        if num_classes < 0:
            raise ValueError(f"num_classes must be >= 0 (0 removes the classifier), got {num_classes}")
        if num_classes == 0:
            head: nn.Module = nn.Identity()
        else:
            ref = next(self.get_classifier().parameters(), None)
            if ref is None:  # an Identity head (after reset_classifier(0)): follow the body
                ref = next(self.parameters(), None)  # type: ignore[attr-defined]
            kw = {} if ref is None else dict(device=ref.device, dtype=ref.dtype)
            head = nn.Linear(self.num_features, num_classes, bias=self.head_bias, **kw)
        self.set_submodule(self.head_path, head)  # type: ignore[attr-defined]

    @property
    def num_classes(self) -> int:
        """Logits per input: the classifier's output width (0 after ``reset_classifier(0)``)."""
        head = self.get_classifier()
        return head.out_features if isinstance(head, nn.Linear) else 0
