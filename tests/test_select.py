"""The selection decision tree (zoo.select) and model=auto / model-implied task resolution (tasks/resolve.py)."""

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

import zoo
from tasks.resolve import resolve_config, task_class, task_configs, trains
from tasks.runner import run
from tests.conftest import fast_overrides
from zoo.select import TREE, as_arguments, mermaid, routes_to, select

ROOT = Path(__file__).resolve().parents[1]
LEAVES = sorted({n.model for n in TREE.values() if n.model})


def test_every_leaf_of_the_tree_is_a_registered_model():
    missing = [name for name in LEAVES if name not in zoo.list_models()]
    assert not missing, f"the decision tree names models the registry lacks: {missing}"


@pytest.mark.parametrize("name", LEAVES)
def test_every_route_to_a_leaf_selects_it_and_the_model_does_that_task(name):
    routes = routes_to(name)
    assert routes, f"{name} is a leaf no path reaches"
    for route in routes:
        args = as_arguments(route)
        sel = select(**args)  # registered_only: also checks the model does the query's task
        assert sel.name == name and sel.path == route, (args, sel)
        assert sel.query.task in zoo.model_info(name).tasks


@pytest.mark.parametrize("args,expected,decisions", [
    ({"modality": "image", "accuracy": "high"}, "resnet20", ["input data type: image", "need high accuracy: high"]),
    ({"modality": "image", "accuracy": "light"}, "mobilenet_tiny", ["need high accuracy: light"]),
    ({"modality": "image", "accuracy": "high", "img_size": 224}, "resnet18", ["ResNet for input size: large"]),
    ({"modality": "image", "arch": "vit"}, "vit_tiny", ["CNN or ViT: vit"]),
    ({"modality": "text", "task": "lm"}, "gpt", ["input data type: text", "Transformer for task: lm"]),
    ({"modality": "text", "task": "generate"}, "gpt", ["Transformer for task: lm"]),  # text generation = LM
    ({"modality": "text", "task": "translate"}, "transformer", ["Transformer for task: seq2seq"]),
    ({"modality": "speech"}, "transformer_encoder", ["input data type: speech"]),
    ({"modality": "timeseries"}, "lstm", ["LSTM or Transformer: lstm"]),
    ({"modality": "timeseries", "sequence": "transformer"}, "transformer_encoder", ["LSTM or Transformer: transformer"]),
    ({"modality": "image", "task": "generate"}, "dcgan", ["input data type: generation", "GAN, VAE or diffusion: gan"]),
    ({"modality": "image", "task": "generate", "generator": "vae"}, "vae", ["GAN, VAE or diffusion: vae"]),
    ({"modality": "image", "task": "generate", "generator": "diffusion"}, "ddpm", ["GAN, VAE or diffusion: diffusion"]),
    ({"modality": "image", "task": "denoise"}, "denoising_autoencoder", ["generate or reconstruct: denoise"]),
    ({"modality": "tabular"}, "mlp", ["input data type: tabular"]),
])
def test_select_walks_the_tree_and_returns_its_path(args, expected, decisions):
    sel = select(**args)
    assert sel.name == expected
    steps = [str(d) for d in sel.path]
    assert all(d in steps for d in decisions), steps
    assert str(sel).startswith(" -> ".join(steps)) and expected in str(sel)
    assert zoo.select(**args).name == expected  # the package-level function


@pytest.mark.parametrize("args,message", [
    ({"modality": "image", "accuracy": "medium"}, "Options there: high, light"),
    ({"modality": "video"}, "image, text, speech, timeseries, tabular"),
    ({"modality": "timeseries", "task": "generate"}, "does classify, lm, forecast, not 'generate'"),
])
def test_impossible_requests_fail_with_what_is_possible(args, message):
    with pytest.raises(zoo.ZooError, match=message.replace("(", r"\(")):
        select(**args)


def test_readme_shows_the_diagram_generated_from_the_table():
    readme = (ROOT / "README.md").read_text()
    assert f"```mermaid\n{mermaid()}```" in readme, "regenerate: python -m zoo.cli select --mermaid"
    for node_id in TREE:  # every row of the table is drawn
        assert f"  {node_id}[" in mermaid() or f"  {node_id}([" in mermaid()


# -- model=auto in the Hydra config ---------------------------------------------------------------------

@pytest.mark.parametrize("overrides,model,task", [
    (["data=cifar10"], "resnet20", "tasks.ClassificationTask"),  # data configs default to model=auto
    (["data=cifar10", "goal.accuracy=light"], "mobilenet_tiny", "tasks.ClassificationTask"),
    (["data=tiny_shakespeare"], "gpt", "tasks.LanguageModelTask"),
    (["data=etth1"], "lstm", "tasks.ForecastingTask"),
    (["data=etth1", "goal.sequence=transformer"], "transformer_encoder", "tasks.ForecastingTask"),
    (["data=mnist", "model=auto", "goal.task=generate"], "dcgan", "tasks.GANTask"),
    (["data=multi30k"], "transformer", "tasks.Seq2SeqTask"),
])
def test_model_auto_resolves_through_the_tree(compose_cfg, overrides, model, task):
    raw = compose_cfg(*overrides, resolve=False)
    assert raw.model.name == "auto"
    cfg = compose_cfg(*overrides)
    assert (cfg.model.name, cfg.task._target_) == (model, task)
    assert set(cfg.model) - {"name"} <= set(zoo.model_info(model).defaults)  # the model's own config
    assert cfg.selection.model == model and cfg.selection.selection.path  # the decision path travels along


def test_resolution_keeps_the_jobs_own_overrides(compose_cfg):
    cfg = compose_cfg("data=cifar10", "goal.accuracy=light", "task.optimizer.lr=0.0123", "+model.drop_rate=0.3",
                      "seed=5", "data.batch_size=64")
    assert cfg.model.name == "mobilenet_tiny"
    assert (cfg.task.optimizer.lr, cfg.model.drop_rate, cfg.seed, cfg.data.batch_size) == (0.0123, 0.3, 5, 64)
    assert cfg.model.num_classes is None  # a fact of the data: its data module states it when the run builds


IMAGE_NON_CLASSIFIERS = [n for n in zoo.list_models(modality="image") if "classify" not in zoo.model_info(n).tasks]


@pytest.mark.parametrize("name", IMAGE_NON_CLASSIFIERS)
def test_a_generative_model_on_image_data_brings_its_task(compose_cfg, name):
    cfg = compose_cfg(f"model={name}", "data=mnist", "task.optimizer.lr=0.0321")
    cls = task_class(cfg.task._target_)
    assert trains(cls, zoo.model_info(name))  # the task's own declaration says it trains this model
    assert task_configs()[cfg.selection.task_config] is cls
    assert (cfg.monitor.metric, cfg.monitor.mode) == cls.monitor  # monitor: auto -> the task's declaration
    assert cfg.task.optimizer.lr == 0.0321
    kept = compose_cfg(f"model={name}", "data=mnist", "task=classification")  # a user's task= wins
    assert kept.task._target_ == "tasks.ClassificationTask" and "selection" not in kept


def test_every_task_config_builds_a_task_that_declares_what_it_trains():
    from zoo.vocab import TASKS

    assert task_configs(), "no task configs found"
    for name, cls in task_configs().items():
        assert cls.kinds and set(cls.kinds) <= set(TASKS), (name, cls.kinds)
        assert cls.monitor[1] in ("min", "max"), (name, cls.monitor)


def test_nothing_to_resolve_costs_nothing_and_resolving_twice_is_a_no_op(compose_cfg):
    plain = compose_cfg("model=mlp", resolve=False)
    assert resolve_config(plain, overrides=["model=mlp"]).cfg is plain
    resolved = compose_cfg("data=cifar10")
    again = resolve_config(resolved, overrides=[])  # already resolved: the overrides are not even needed
    assert again.cfg is resolved and not again.changed
    given = compose_cfg("model=vae", "data=mnist", "task=vae")  # the task that trains it, named by the user
    assert resolve_config(given).cfg is given  # nothing to add, so no overrides needed either


def test_model_auto_without_the_jobs_overrides_is_an_error_not_a_guess(compose_cfg):
    cfg = compose_cfg("data=cifar10", "task.optimizer.lr=0.5", resolve=False)
    with pytest.raises(zoo.ZooError, match="overrides it was composed with"):
        resolve_config(cfg)  # no Hydra job, no cfg.hydra: recomposing would silently drop lr=0.5


def test_a_run_prints_and_saves_the_selection(compose_cfg, tmp_path, capsys):
    cfg = compose_cfg(*fast_overrides("data=fashion_mnist", "goal.accuracy=light", "trainer.limit_train_batches=2",
                                      "data.batch_size=32"))
    metrics = run(cfg)
    assert metrics["model"] == "mobilenet_tiny"
    saved = json.loads((tmp_path / "selection.json").read_text())
    assert saved["model"] == "mobilenet_tiny" and "need high accuracy: light" in saved["selection"]["path"]
    resolved = OmegaConf.load(tmp_path / "resolved_config.yaml")
    assert resolved.model.name == "mobilenet_tiny"
    assert zoo.load_model(metrics["best_checkpoint"]).zoo_kwargs["in_chans"] == 1  # the data's fact reached it
    assert "[selection] model=mobilenet_tiny" in capsys.readouterr().out
