"""The registry: strict names, helpful errors, wildcard and metadata filters."""

import pytest
import torch

import zoo
from zoo.registry import UnknownModelError, ZooError, register_model


def test_duplicate_name_is_an_error():
    with pytest.raises(ValueError, match="already registered"):

        @register_model(family="lenet", modality="image", tasks=("classify",))
        def lenet5():  # noqa: F811 - the point of the test
            return torch.nn.Identity()


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownModelError) as err:
        zoo.create_model("resnet21")
    msg = str(err.value)
    assert "unknown model 'resnet21'" in msg and "resnet20" in msg and "zoo list" in msg


def test_wrong_kwarg_names_the_accepted_ones():
    with pytest.raises(ZooError, match="accepts: .*num_classes"):
        zoo.create_model("lenet5", num_clases=10)


def test_list_models_wildcards_and_filters():
    assert zoo.list_models("resnet*") == sorted(
        ["resnet18", "resnet20", "resnet32", "resnet34", "resnet50", "resnet56"]
    )
    assert zoo.list_models(["lenet*", "alex*"]) == ["alexnet", "lenet5"]
    assert zoo.list_models(family="resnet", task="classify") == zoo.list_models("resnet*")
    image = zoo.list_models(modality="image")
    assert {"mlp", "lenet5", "alexnet", "mobilenet_tiny", "resnet20"} <= set(image)
    assert zoo.list_models("no_such*") == []


def test_metadata_and_param_count():
    info = zoo.model_info("resnet20")
    assert (info.family, info.modality, info.input_shape) == ("resnet", "image", (3, 32, 32))
    assert "classify" in info.tasks and "He" in info.paper
    assert info.defaults["num_classes"] == 10
    # He et al. 2016, Table 6: ResNet-20 has 0.27M parameters.
    assert 0.26e6 < zoo.count_params("resnet20") < 0.28e6
    assert zoo.count_params("lenet5") == zoo.count_params(zoo.create_model("lenet5"))


def test_zoo_imports_without_lightning_or_hydra():
    import subprocess
    import sys

    code = "import sys, zoo; zoo.create_model('lenet5'); print('lightning' in sys.modules, 'hydra' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
