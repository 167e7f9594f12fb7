"""The Python API names a wrong input shape: every registered image model checks channels (and size, where
it was built for one) at its entrance, with what to set."""

from __future__ import annotations

import pytest
import torch

import zoo
from zoo.inputs import InputShapeError

# models that take images (a GAN's outermost module takes noise vectors: its input_shape is (latent_dim,))
IMAGE_MODELS = [n for n in zoo.list_models() if "image" in zoo.model_info(n).modalities
                and "in_chans" in zoo.model_info(n).defaults and len(zoo.model_info(n).input_shape or ()) != 1]


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_a_wrong_channel_count_or_size_is_named_at_the_entrance(name):
    info = zoo.model_info(name)
    model = zoo.create_model(name).eval()
    shape = info.input_shape
    assert shape is not None and len(shape) == 3, f"{name}: register_model(input_shape=(C, H, W)) is missing"
    c, h, w = shape
    with pytest.raises(InputShapeError, match=rf"in_chans={c}\b.*in_chans={c + 1}"):
        model(torch.zeros(1, c + 1, h, w))
    if info.defaults.get("img_size") is not None:
        with pytest.raises(InputShapeError, match=rf"img_size={h}\b.*img_size={h + 4}"):
            model(torch.zeros(1, c, h + 4, w + 4))


def test_the_api_error_is_a_zoo_error_and_a_value_error():
    model = zoo.create_model("lenet5")
    with pytest.raises(zoo.ZooError, match="resize the images to 28x28"):
        model(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError):
        model(torch.zeros(2, 3, 28, 28))
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)  # the right shape passes


def test_an_mlp_on_table_rows_is_not_checked_as_an_image():
    model = zoo.create_model("mlp", in_features=13, num_classes=2)
    assert model(torch.zeros(4, 13)).shape == (4, 2)
