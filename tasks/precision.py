"""``trainer.precision=bf16-auto``: bf16 autocast where the hardware computes in bf16, full precision elsewhere.

bf16 is a speed choice, not an accuracy one: the ResNet and diffusion recipes ran ~1.7x faster in ``bf16-mixed``
on a CPU with AVX-512 (oneDNN's bf16 kernels), but a CPU with AVX2 only emulates bf16: there resnet20 trained at
21.5 samples/s in bf16 against 278.4 in float32, 0.08x (``python benchmarks/airbench_speed.py --model resnet20
--threads 2 --batch 256``). So the recipes ask for ``bf16-auto`` and get what is fast on the machine they run on.
"""

from __future__ import annotations

AUTO = "bf16-auto"


def bf16_is_native(accelerator: str = "cpu") -> bool:
    """Whether ``accelerator`` ("cpu", "gpu"/"cuda", "auto") runs bf16 matmuls and convolutions natively."""
    import torch  # here, not at the top: the config check imports this module and must not load torch (~2.3 s)

    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if accelerator not in ("cpu", "auto"):
        return False  # mps, xla, ...: leave bf16 to an explicit trainer.precision=bf16-mixed
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # oneDNN: AVX-512 (BF16/AMX) or better
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: object, accelerator: str = "cpu") -> str:
    """Lightning's precision for a config value: ``bf16-auto`` becomes ``bf16-mixed`` or ``32-true``."""
    precision = str(precision)
    if precision != AUTO:
        return precision
    return "bf16-mixed" if bf16_is_native(str(accelerator)) else "32-true"
