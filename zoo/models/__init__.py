"""Model families. Importing a family module registers its builders."""

from zoo.models import (  # noqa: F401
    airbench,
    autoencoder,
    cnn,
    diffusion,
    gan,
    mlp,
    resnet,
    rnn,
    transformer,
    vit,
    word2vec,
)
