"""Generative tasks: reconstruction (autoencoders, denoising), the VAE's ELBO, and adversarial training.

One module a task: ``base`` (:class:`GenerativeTask`, what they share), ``reconstruction``, ``vae``, ``gan``,
``diffusion``.

Pixels: the image DataModule normalises batches with the dataset's mean/std; these tasks map every
batch back to [0, 1] with the DataModule's own ``spec`` (nothing to configure; with
``data.normalize=false`` the batch is taken as it comes), so losses, metrics and pictures are all in
pixel units.

Pictures: after every validation epoch and at test, image grids go to ``<run folder>/images/``
(``<name>-epoch003.png``, ``<name>-test.png``; rank 0 only, never during the sanity check) and to
TensorBoard when that logger is on.

Sample quality: the VAE and GAN tasks log ``val/fd`` every validation epoch and ``test/fd`` at test, the
Fréchet distance of ``fd_samples`` generated images (a fixed noise seed) to the real validation / test
set in the feature space of this project's own MNIST-style classifier (``tasks/frechet.py``), and
``test/fd_real``, the same distance for as many held-out real images (the validation split): the floor.
The diffusion task, whose samples cost one network pass per step, scores ``val/fd`` every few epochs on
fewer samples and steps (``diffusion.DiffusionTask``).
"""

from tasks.generative.base import GenerativeTask
from tasks.generative.diffusion import DiffusionTask
from tasks.generative.gan import GANTask
from tasks.generative.reconstruction import ReconstructionTask
from tasks.generative.vae import BINARIZE, ELBO, VAETask, gaussian_kl

__all__ = ["BINARIZE", "ELBO", "DiffusionTask", "GANTask", "GenerativeTask", "ReconstructionTask", "VAETask", "gaussian_kl"]
