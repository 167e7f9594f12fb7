"""Vision Transformers (Dosovitskiy et al. 2021) for small images, on the zoo's shared pre-norm encoder.

An image is cut into non-overlapping ``patch_size`` squares (timm's PatchEmbed: one strided conv), each
patch becomes a token, the tokens get a 2-D position (learned, or the fixed sin-cos grid of Beyer et al.
2022) and run through :class:`zoo.layers.TransformerEncoder`; a class token or the mean of the patch
tokens feeds a linear head. Patch 4 on 32-pixel CIFAR gives 64 tokens; 28-pixel MNIST takes patch 4
(49 tokens) or 7 (16 tokens, about 3x cheaper).
"""

from __future__ import annotations

import torch
from timm.layers import PatchEmbed, build_sincos2d_pos_embed
from torch import nn

from zoo.layers import ClassifierMixin, TransformerEncoder
from zoo.registry import ZooError, register_model

POOLS = ("cls", "mean")
POS = ("learned", "sincos")


class ViTConfigError(ZooError, ValueError):
    """ViT arguments that cannot work together (e.g. a patch size that does not divide the image)."""


def _check(*, img_size: int, patch_size: int, embed_dim: int, num_heads: int, pool: str, pos: str) -> None:
    if patch_size < 1 or img_size % patch_size:
        fits = [p for p in range(2, img_size) if img_size % p == 0]
        raise ViTConfigError(f"patch_size={patch_size} does not divide img_size={img_size}; patch sizes that "
                             f"work for {img_size}-pixel images: {', '.join(map(str, fits)) or img_size}")
    if embed_dim % num_heads:
        raise ViTConfigError(f"embed_dim={embed_dim} must be divisible by num_heads={num_heads}")
    if pool not in POOLS:
        raise ViTConfigError(f"pool={pool!r}; choose one of {', '.join(POOLS)}")
    if pos not in POS:
        raise ViTConfigError(f"pos={pos!r}; choose one of {', '.join(POS)}")
    if pos == "sincos" and embed_dim % 4:
        raise ViTConfigError(f"pos='sincos' needs embed_dim divisible by 4 (sin and cos of rows and columns), "
                             f"got embed_dim={embed_dim}; use pos='learned' or another embed_dim")


class VisionTransformer(ClassifierMixin, nn.Module):
    """Vision Transformer, ViT (Dosovitskiy et al. 2021): patch tokens -> pre-norm Transformer encoder -> head.

    timm's surface: ``forward_features`` -> the (B, N, D) tokens, ``forward_head`` pools (class token or mean)
    and classifies (``pre_logits=True``: the pooled (B, ``num_features``) vector), ``get_classifier`` /
    ``reset_classifier`` (:class:`~zoo.layers.ClassifierMixin`).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        in_chans: int,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        pool: str = "cls",
        pos: str = "learned",
    ) -> None:
        super().__init__()
        _check(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim, num_heads=num_heads, pool=pool,
               pos=pos)
        self.pool = pool
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, in_chans=in_chans,
                                      embed_dim=embed_dim)
        grid = img_size // patch_size
        self.num_patches = grid * grid
        # Positions belong to the patches only; the class token is position-free (it is the same at
        # every image and attends to all patches), which lets the fixed sin-cos grid cover exactly the patches.
        if pos == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, embed_dim))
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        else:
            table = build_sincos2d_pos_embed([grid, grid], dim=embed_dim)  # (N, D), rows then columns
            self.register_buffer("pos_embed", table[None], persistent=False)  # (1, N, D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if pool == "cls" else None
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        self.pos_drop = nn.Dropout(drop_rate)
        self.encoder = TransformerEncoder(embed_dim, depth, num_heads, mlp_ratio=mlp_ratio, dropout=drop_rate,
                                          attn_dropout=attn_drop_rate, drop_path_rate=drop_path_rate,
                                          norm_first=True)
        self.head_drop = nn.Dropout(drop_rate)
        self.num_features = embed_dim
        self.head = nn.Linear(embed_dim, num_classes)
        self.apply(_init_weights)
        # A zero head starts every class at the same logit, so the first steps do not chase random biases.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameters timm's optimizer factory keeps out of weight decay (besides biases and norms)."""
        return {"pos_embed", "cls_token"}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, N, D) encoded tokens (N patches, plus the class token first)."""
        x = self.patch_embed(x)  # (B, C, H, W) -> (B, N, D), patches in row-major order
        x = x + self.pos_embed.to(x.dtype)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)  # (B, 1 + N, D)
        return self.encoder(self.pos_drop(x))

    def forward_head(self, tokens: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """(B, N, D) tokens -> (B, num_classes) logits, from the class token or the mean patch token
        (``pre_logits=True``: that pooled (B, D) token)."""
        pooled = tokens[:, 0] if self.cls_token is not None else tokens.mean(dim=1)  # (B, N, D) -> (B, D)
        pooled = self.head_drop(pooled)
        return pooled if pre_logits else self.head(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(m: nn.Module) -> None:
    # timm's ViT init: truncated-normal linear weights, zero biases; the patch conv keeps PyTorch's init.
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


_VIT = dict(family="vit", modality="image", tasks=("classify",), input_shape=(3, 32, 32),
            paper="Dosovitskiy et al. 2021")


@register_model(**_VIT)
def vit_tiny(
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    img_size: int = 32,
    patch_size: int = 4,
    embed_dim: int = 192,
    depth: int = 6,
    num_heads: int = 3,
    mlp_ratio: float = 2.0,
    drop_rate: float = 0.0,
    attn_drop_rate: float = 0.0,
    drop_path_rate: float = 0.1,
    pool: str = "cls",
    pos: str = "learned",
) -> VisionTransformer:
    """ViT-Ti's width and heads (192, 3) at half its depth and MLP ratio: about 1.8M parameters, CPU-sized."""
    return VisionTransformer(num_classes=num_classes, in_chans=in_chans, img_size=img_size, patch_size=patch_size,
                             embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                             drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
                             pool=pool, pos=pos)


@register_model(**_VIT)
def vit_small(
    *,
    num_classes: int = 10,
    in_chans: int = 3,
    img_size: int = 32,
    patch_size: int = 4,
    embed_dim: int = 384,
    depth: int = 12,
    num_heads: int = 6,
    mlp_ratio: float = 4.0,
    drop_rate: float = 0.0,
    attn_drop_rate: float = 0.0,
    drop_path_rate: float = 0.1,
    pool: str = "cls",
    pos: str = "learned",
) -> VisionTransformer:
    """ViT-S (384 wide, 12 layers, 6 heads, as in timm's vit_small): about 21M parameters, a GPU model."""
    return VisionTransformer(num_classes=num_classes, in_chans=in_chans, img_size=img_size, patch_size=patch_size,
                             embed_dim=embed_dim, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                             drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
                             pool=pool, pos=pos)
