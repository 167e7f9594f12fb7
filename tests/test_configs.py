"""Every model config composes with every compatible data config, and maps 1:1 onto its builder; every data
config states the facts its model is built with. The lists come from conf/ and the registry: a new model or
dataset is covered without editing this file."""

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

import zoo
from tasks.runner import model_config

CONF = Path(__file__).resolve().parents[1] / "conf"
MODEL_CONFIGS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
DATA_CONFIGS = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))
IMAGE_DATA = [d for d in DATA_CONFIGS if OmegaConf.select(OmegaConf.load(CONF / "data" / f"{d}.yaml"),
                                                          "data.meta.modality") == "image"]


def _model_name(cfg):
    return cfg.model.name


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_registered_model_has_a_config(name):
    assert (CONF / "model" / f"{name}.yaml").is_file(), f"add conf/model/{name}.yaml"


@pytest.mark.parametrize("config", MODEL_CONFIGS)
def test_model_config_keys_are_builder_kwargs(config, compose_cfg):
    cfg = compose_cfg(f"model={config}")
    name = cfg.model.name
    if "/" in name:  # timm/... and torchvision/... pass through to those libraries
        return
    accepted = set(zoo.model_info(name).defaults)
    extra = set(cfg.model) - accepted - {"name"}
    assert not extra, f"conf/model/{config}.yaml has keys the builder {name} does not take: {extra}"


@pytest.mark.parametrize("data", IMAGE_DATA)
@pytest.mark.parametrize("model", zoo.list_models(modality="image", task="classify"))
def test_image_classifier_composes_and_instantiates_with_image_data(model, data, compose_cfg):
    cfg = compose_cfg(f"model={model}", f"data={data}")
    dm = instantiate(cfg.data, _convert_="all")
    task = instantiate(cfg.task, model=model_config(cfg, dm), _convert_="all")  # the data's facts fill the model
    assert task.model_name == model
    assert task.model_kwargs["num_classes"] == dm.num_classes
    assert task.model_kwargs.get("in_chans", dm.in_chans) == dm.in_chans
    assert cfg.model.get("num_classes") is None and cfg.model.get("in_chans") is None  # stated once: by the data


def test_defaults_train_lenet5_on_mnist(compose_cfg):
    cfg = compose_cfg()
    assert (cfg.model.name, cfg.data.dataset, cfg.task._target_) == ("lenet5", "mnist", "tasks.ClassificationTask")
    assert cfg.monitor.metric == "val/acc"  # monitor: auto -> ClassificationTask.monitor


def test_data_root_defaults_to_the_environment(monkeypatch):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    monkeypatch.setenv("ZOO_DATA_DIR", "/some/where")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["paths.output_dir=."])
    assert cfg.data.root == "/some/where"


@pytest.mark.parametrize("data", DATA_CONFIGS)
def test_every_data_config_states_the_facts_its_model_is_built_with(data, compose_cfg):
    from tasks.data import DataError
    from tasks.facts import FACT_KEYS, accepted

    cfg = compose_cfg(f"data={data}")  # model=auto: the decision tree's model for this data
    if "path" in cfg.data and cfg.data.path is None:  # your own data (data=csv): the user names the file
        with pytest.raises(Exception, match="data.path="):
            instantiate(cfg.data, _convert_="all")
        return
    dm = instantiate(cfg.data, _convert_="all")
    try:
        facts = dm.facts()
    except DataError as e:  # a dataset the data root holds only in part (ag_news: test.csv only)
        assert "data.download=true" in str(e)  # it says what is missing and how to get it
        return
    assert facts and set(facts) <= set(FACT_KEYS), facts
    model_cfg = model_config(cfg, dm)
    for key, value in facts.items():
        if key in accepted(model_cfg["name"]):
            assert model_cfg[key] == value, (key, model_cfg[key], value)
    name, kwargs = model_cfg.pop("name"), model_cfg
    assert zoo.count_params(zoo.create_model(name, **kwargs)) > 0
