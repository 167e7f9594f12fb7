"""Model families. Importing a family module registers its builders."""

from zoo.models import cnn, mlp, resnet, rnn, transformer, word2vec  # noqa: F401
