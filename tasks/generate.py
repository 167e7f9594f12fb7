"""Write samples of a trained generative model (vae, gan, dcgan, ddpm) from its checkpoint.

    python -m tasks.generate outputs/<date>/<time>/checkpoints/last.ckpt --num 64 --out samples.png
    python -m tasks.generate CKPT --num 100 --out samples/          # one PNG per sample
    python -m tasks.generate DDPM_CKPT --steps 20 --eta 0.5         # a diffusion model: DDIM steps and noise
    python -m tasks.generate DDPM_CKPT --sampler ddpm               # ancestral sampling, all T steps

The model is rebuilt from the checkpoint by ``zoo.load_model`` (``torch.load(weights_only=True)`` and the
registry): no Hydra, no Lightning module, no pickled code.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from zoo.checkpoint import load_model
from zoo.predict import sample_images


def generate(
    ckpt: str | Path,
    *,
    num: int = 64,
    out: str | Path = "samples.png",
    seed: int = 0,
    nrow: int | None = None,
    steps: int | None = None,
    eta: float | None = None,
    sampler: str | None = None,
) -> Path:
    """Draw ``num`` samples from the checkpoint's model and write them: one grid image, or a folder of PNGs.

    ``steps``, ``eta`` and ``sampler`` set how a diffusion model samples (None: the model's own settings).
    The sampling and writing are ``zoo.predict.sample_images`` (also behind ``zoo predict``).
    """
    return sample_images(load_model(ckpt), out, num=num, seed=seed, nrow=nrow, steps=steps, eta=eta,
                         sampler=sampler)


def main(argv: Sequence[str] | None = None) -> None:
    from tasks.cli_checks import report_user_error

    parser = argparse.ArgumentParser(prog="python -m tasks.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="a .ckpt written by train.py (checkpoints/best-*.ckpt or last.ckpt)")
    parser.add_argument("--num", type=int, default=64, help="number of samples (default 64)")
    parser.add_argument("--out", default="samples.png",
                        help="a .png/.jpg file for one grid, or a folder for one PNG per sample (default samples.png)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latent noise (default 0)")
    parser.add_argument("--nrow", type=int, default=None, help="images per grid row (default: a square grid)")
    parser.add_argument("--steps", type=int, default=None,
                        help="diffusion models: DDIM sampling steps (default: the model's sample_steps)")
    parser.add_argument("--eta", type=float, default=None,
                        help="diffusion models: DDIM noise, 0 deterministic to 1 ancestral-like (default: the model's)")
    parser.add_argument("--sampler", choices=("ddim", "ddpm"), default=None,
                        help="diffusion models: ddim (--steps) or ddpm (ancestral, all T steps)")
    args = parser.parse_args(argv)
    with report_user_error():
        out = generate(args.checkpoint, num=args.num, out=args.out, seed=args.seed, nrow=args.nrow, steps=args.steps,
                       eta=args.eta, sampler=args.sampler)
    print(f"wrote {args.num} samples to {out}")


if __name__ == "__main__":
    main()
