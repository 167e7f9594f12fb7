"""Beam-search decoding of the whole Multi30k test set with and without the key/value cache.

A randomly initialised ``transformer`` at its default size (conf/model/transformer.yaml, with the
vocabulary, padding id and maximum length of the Multi30k data) translates the 1000 test sentences
with beam 4, in the test loader's batches and with the decoding lengths ``Seq2SeqTask.translate``
uses: min(data.max_len, 1.5 * source length + 10). An untrained model rarely says <eos>, so it decodes
to that length: the worst case. Prints the seconds of each path, the speed-up and whether both gave
the same tokens. Target: <= 90 s with the cache on 2 threads.

    python benchmarks/decoding.py                        # beam 4, cache and re-feeding, 2 threads
    python benchmarks/decoding.py --limit 250 --beam 1   # a quicker look: the first batch, greedy
    python benchmarks/decoding.py --no-reference         # the cached path only
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import zoo
from zoo.decoding import beam_search, greedy_decode

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")
sys.path.insert(0, str(ROOT))  # the data module lives in tasks/, which is not installed with zoo


def load_test_set(data_dir: str | None):
    """The Multi30k DataModule as training builds it from conf/data/multi30k.yaml, set up for testing."""
    overrides = ["model=transformer", "data=multi30k"] + ([f"paths.data_dir={data_dir}"] if data_dir else [])
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    dm = instantiate(cfg.data)
    dm.setup("test")
    max_decode_len = int(cfg.data.max_len)
    model_cfg = OmegaConf.to_container(cfg.model)  # the architecture; the data supplies vocabulary and lengths
    return dm, model_cfg, max_decode_len


def build_model(model_cfg: dict, dm) -> torch.nn.Module:
    kwargs = {k: v for k, v in model_cfg.items() if k != "name" and not (isinstance(v, str) and "${" in v)}
    kwargs.update(src_vocab_size=dm.vocab_size, tgt_vocab_size=dm.vocab_size, pad_id=dm.pad_id, max_len=dm.max_len)
    torch.manual_seed(0)
    return zoo.create_model(str(model_cfg["name"]), **kwargs).eval()


def decode_all(model, batches, *, beam: int, bos_id: int, eos_id: int, pad_id: int, max_decode_len: int,
               use_cache: bool) -> tuple[float, list[torch.Tensor], int]:
    """Seconds to translate every batch, the outputs, and the decoding steps run (sum over batches)."""
    outs, steps = [], 0
    t0 = time.perf_counter()
    for src in batches:
        max_len = min(max_decode_len, int(src.shape[1] * 1.5) + 10)  # as Seq2SeqTask.translate
        kw = dict(bos_id=bos_id, eos_id=eos_id, max_len=max_len, use_cache=use_cache)
        if beam > 1:
            out = beam_search(model, src, src == pad_id, beam_size=beam, **kw)
        else:
            out = greedy_decode(model, src, src == pad_id, **kw)
        outs.append(out)
        steps += out.shape[1]
    return time.perf_counter() - t0, outs, steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--beam", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="only the first N test sentences")
    p.add_argument("--data-dir", default=None, help="default: $ZOO_DATA_DIR, as in conf/paths")
    p.add_argument("--no-reference", action="store_true", help="skip the (slow) re-feeding path")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    dm, model_cfg, max_decode_len = load_test_set(args.data_dir)
    model = build_model(model_cfg, dm)
    batches, n = [], 0
    for batch in dm.test_dataloader():
        src = dm.on_after_batch_transfer(batch, 0)[0]  # padding columns trimmed, as in training
        if args.limit is not None:
            src = src[: args.limit - n]
        if len(src):
            batches.append(src)
            n += len(src)
    arch = {k: v for k, v in model_cfg.items() if k != "name" and v is not None}
    print(f"torch {torch.__version__}, threads={args.threads}; {model_cfg['name']} {arch}, vocab {dm.vocab_size}, "
          f"{zoo.count_params(model):,} parameters, random weights; {n} test sentences in {len(batches)} "
          f"batches, beam {args.beam}")
    ids = dict(bos_id=dm.bos_id, eos_id=dm.eos_id, pad_id=dm.pad_id, max_decode_len=max_decode_len)
    fast, fast_out, steps = decode_all(model, batches, beam=args.beam, use_cache=True, **ids)
    print(f"  with cache:   {fast:7.1f} s  ({n / fast:6.1f} sentences/s, {steps} steps)")
    if not args.no_reference:
        slow, slow_out, _ = decode_all(model, batches, beam=args.beam, use_cache=False, **ids)
        same = all(torch.equal(a, b) for a, b in zip(fast_out, slow_out, strict=True))
        print(f"  re-feeding:   {slow:7.1f} s  ({n / slow:6.1f} sentences/s)")
        print(f"  speed-up {slow / fast:.1f}x; same tokens: {same}")


if __name__ == "__main__":
    main()
