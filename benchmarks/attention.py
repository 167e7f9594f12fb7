"""Our MultiHeadAttention (fused SDPA kernel) against torch.nn.MultiheadAttention, same weights and inputs.

Times forward (inference) and forward + backward (training), self-attention with and without a
causal mask, alternating the two implementations ``--repeats`` times in one process; prints
milliseconds per call and the speed ratio (ours / torch: above 1.0 means ours is faster).

    python benchmarks/attention.py                      # seq 256, dim 256, 8 heads, batch 8
    python benchmarks/attention.py --seq 512 --dim 384 --heads 6 --dtype bfloat16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from zoo.layers import MultiHeadAttention, causal_mask


def _time(fn, *, iters: int) -> float:
    fn()  # warm-up (kernel selection, allocations)
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)

    ours = MultiHeadAttention(args.dim, args.heads).to(dtype)
    ref = torch.nn.MultiheadAttention(args.dim, args.heads, batch_first=True).to(dtype)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.in_proj.weight)
        ref.in_proj_bias.copy_(ours.in_proj.bias)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    x = torch.randn(args.batch, args.seq, args.dim, dtype=dtype)
    mask = causal_mask(args.seq)
    torch.testing.assert_close(ours(x, is_causal=True), ref(x, x, x, attn_mask=mask, need_weights=False)[0],
                               atol=1e-2 if dtype == torch.bfloat16 else 1e-4, rtol=1e-2)

    cases = {
        "inference": (lambda: ours(x), lambda: ref(x, x, x, need_weights=False)),
        "inference causal": (lambda: ours(x, is_causal=True),
                             lambda: ref(x, x, x, attn_mask=mask, need_weights=False, is_causal=True)),
        "train fwd+bwd": (lambda: ours(x).sum().backward(), lambda: ref(x, x, x, need_weights=False)[0].sum().backward()),
        "train causal fwd+bwd": (lambda: ours(x, is_causal=True).sum().backward(),
                                 lambda: ref(x, x, x, attn_mask=mask, need_weights=False,
                                             is_causal=True)[0].sum().backward()),
    }
    print(f"torch {torch.__version__}, threads={args.threads}, batch={args.batch}, seq={args.seq}, dim={args.dim}, "
          f"heads={args.heads}, dtype={args.dtype}, {args.repeats} alternating repeats of {args.iters} calls")
    for name, (f_ours, f_ref) in cases.items():
        train = name.startswith("train")
        ours.train(train)
        ref.train(train)
        a, b = [], []
        with torch.set_grad_enabled(train):
            for _ in range(args.repeats):
                a.append(_time(f_ours, iters=args.iters))
                b.append(_time(f_ref, iters=args.iters))
        ma, mb = statistics.median(a), statistics.median(b)
        print(f"{name:>22s}: ours {ma:7.2f} ms | nn.MultiheadAttention {mb:7.2f} ms | speed ratio {mb / ma:.2f}")


if __name__ == "__main__":
    main()
