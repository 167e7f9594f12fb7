"""Model families. Importing a family module registers its builders."""

from zoo.models import airbench, autoencoder, cnn, gan, mlp, resnet, rnn, transformer, vit, word2vec  # noqa: F401
from zoo.models import diffusion  # noqa: F401
