"""The selection decision tree: which zoo model fits a data type, a task and a goal.

The tree is one table, :data:`TREE`. :func:`select` walks it, :func:`mermaid` draws it (the README's
diagram is this function's output, checked by a test) and :func:`routes_to` finds the branches that
lead to a model, so the code, the diagram and ``zoo info`` cannot disagree. It follows the study
notes' tree: image -> CNN/ViT (high accuracy -> ResNet, else the lightweight CNN),
text/speech -> Transformer, time series -> LSTM/Transformer, generation -> GAN (VAE/diffusion when asked),
extended with the task a text model must do and with tabular data (an MLP).

>>> zoo.select("image", accuracy="light").name
'mobilenet_tiny'
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from zoo.registry import ZooError
from zoo.vocab import DEFAULT_TASK, GENERATIVE_TASKS, MODALITIES, TASK_ALIASES

__all__ = ["TREE", "Decision", "Node", "Query", "Selection", "as_arguments", "mermaid", "routes_to", "select"]


class Node(NamedTuple):
    """One row of the tree: a question (``ask`` + ``branches``) or a leaf (``model``)."""

    label: str  # shown in the diagram and in decision paths
    ask: str | None = None  # the Query field this question branches on
    branches: tuple[tuple[str, str], ...] = ()  # (answer, next node id), in diagram order
    model: str | None = None  # a leaf's registry name; a leaf without one is a model the zoo lacks
    note: str = ""  # why this leaf, shown in decision paths and in errors


# The tree, root first. Answers of `kind` are the modalities plus "generation" (an image task that makes
# images rather than labels); the other questions read the Query field of the same name.
TREE: dict[str, Node] = {
    "start": Node("input data type?", ask="kind", branches=(
        ("image", "image"), ("text", "text"), ("speech", "text"), ("timeseries", "timeseries"),
        ("generation", "generation"), ("tabular", "mlp"))),
    "image": Node("CNN or ViT?", ask="arch", branches=(("cnn", "accuracy"), ("vit", "vit_tiny"))),
    "accuracy": Node("need high accuracy?", ask="accuracy", branches=(("high", "resnet"),
                                                                       ("light", "mobilenet_tiny"))),
    "resnet": Node("ResNet for input size?", ask="size", branches=(("small", "resnet20"), ("large", "resnet18"))),
    "resnet20": Node("resnet20", model="resnet20",
                     note="the CIFAR ResNet (He et al. 2016, section 4.2) for images up to 64 pixels a side"),
    "resnet18": Node("resnet18", model="resnet18",
                     note="the ImageNet ResNet-18 for images over 64 pixels (set model.small_input=false)"),
    "mobilenet_tiny": Node("lightweight CNN: mobilenet_tiny", model="mobilenet_tiny",
                           note="depthwise-separable convolutions: about a quarter of resnet20's parameters"),
    "vit_tiny": Node("vit_tiny", model="vit_tiny", note="attention on 4x4 patches; needs more data or epochs"),
    "text": Node("Transformer for task?", ask="task", branches=(
        ("classify", "transformer_encoder"), ("lm", "gpt"), ("seq2seq", "transformer"), ("embed", "word2vec"))),
    "transformer_encoder": Node("transformer_encoder", model="transformer_encoder",
                                note="encoder-only (BERT-style) classifier"),
    "gpt": Node("gpt", model="gpt", note="decoder-only, causal language model"),
    "transformer": Node("transformer", model="transformer", note="encoder-decoder (Vaswani et al. 2017)"),
    "word2vec": Node("word2vec", model="word2vec", note="static word vectors (skip-gram)"),
    "timeseries": Node("LSTM or Transformer?", ask="sequence", branches=(("lstm", "lstm"),
                                                                       ("transformer", "ts_transformer"))),
    "lstm": Node("lstm", model="lstm", note="recurrent, one step at a time"),
    "ts_transformer": Node("transformer_encoder", model="transformer_encoder",
                           note="attention over the whole input window at once"),
    "generation": Node("generate or reconstruct?", ask="task", branches=(
        ("generate", "sampler"), ("reconstruct", "autoencoder"), ("denoise", "denoising_autoencoder"))),
    "sampler": Node("GAN, VAE or diffusion?", ask="generator", branches=(
        ("gan", "dcgan"), ("vae", "vae"), ("diffusion", "diffusion"))),
    "dcgan": Node("dcgan", model="dcgan", note="convolutional GAN (Radford et al. 2016)"),
    "vae": Node("vae", model="vae", note="a probabilistic latent; also reconstructs"),
    "diffusion": Node("ddpm", model="ddpm", note="denoising diffusion (Ho et al. 2020), sampled with DDIM"),
    "autoencoder": Node("autoencoder", model="autoencoder", note="encoder -> latent -> decoder"),
    "denoising_autoencoder": Node("denoising_autoencoder", model="denoising_autoencoder",
                                  note="reconstructs clean images from corrupted ones"),
    "mlp": Node("MLP", model="mlp", note="structured (tabular) features"),
}

ROOT = "start"
GOALS = {  # Query field -> (default, what it means); these are also the Hydra `goal.*` keys
    "accuracy": ("high", "image: high -> ResNet, light -> the lightweight CNN"),
    "arch": ("cnn", "image: cnn or vit"),
    "generator": ("gan", "image generation: gan, vae or diffusion"),
    "sequence": ("lstm", "time series: lstm or transformer"),
}
LARGE_IMAGE = 64  # pixels a side above which an ImageNet-style ResNet (strided stem) pays off


@dataclass(frozen=True)
class Query:
    """What :func:`select` is asked, normalised: every field a node of the tree can ask about."""

    modality: str
    task: str
    accuracy: str = "high"
    arch: str = "cnn"
    generator: str = "gan"
    sequence: str = "lstm"
    img_size: int | None = None

    @property
    def kind(self) -> str:
        return "generation" if self.modality == "image" and self.task in GENERATIVE_TASKS else self.modality

    @property
    def size(self) -> str:
        return "large" if self.img_size is not None and self.img_size > LARGE_IMAGE else "small"

    def answer(self, ask: str) -> str:
        return str(getattr(self, ask))


class Decision(NamedTuple):
    """One step of a decision path: the question asked and the answer that was taken."""

    question: str
    answer: str
    ask: str = ""  # the Query field the question read

    def __str__(self) -> str:
        return f"{self.question.rstrip('?')}: {self.answer}"


class Selection(NamedTuple):
    """The tree's choice: ``name`` (a registry name) and ``path``, the decisions that led there."""

    name: str
    path: tuple[Decision, ...]
    query: Query
    note: str = ""

    def __str__(self) -> str:
        steps = " -> ".join(str(d) for d in self.path)
        return f"{steps} -> {self.name}" + (f" ({self.note})" if self.note else "")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.name, "path": [str(d) for d in self.path], "note": self.note,
                "query": asdict(self.query), "summary": str(self)}


def _options(node: Node) -> str:
    return ", ".join(a for a, _ in node.branches)


def _normalise(modality: str, task: str | None) -> tuple[str, str]:
    if modality not in MODALITIES:
        raise ZooError(f"unknown modality {modality!r}: the decision tree knows {', '.join(MODALITIES)}.")
    task = TASK_ALIASES.get(task, task) if task else DEFAULT_TASK[modality]
    if modality in ("text", "speech") and task == "generate":
        task = "lm"  # generating text is autoregressive language modelling
    return modality, task


def select(
    modality: str,
    *,
    task: str | None = None,
    accuracy: str = "high",
    arch: str = "cnn",
    generator: str = "gan",
    sequence: str = "lstm",
    img_size: int | None = None,
    registered_only: bool = True,
) -> Selection:
    """Walk the decision tree to a registry name: ``select("image", accuracy="light").name == "mobilenet_tiny"``.

    ``task`` defaults to the modality's usual one (classify; forecast for time series); ``translate``
    means ``seq2seq``, and generating text means ``lm``. ``img_size`` picks the ResNet for the input
    (resnet20 up to 64 pixels a side). With ``registered_only`` a leaf that is not registered in this
    installation is an error. The result's ``path`` lists the decisions taken; ``str()`` prints them.
    """
    modality, task = _normalise(modality, task)
    query = Query(modality=modality, task=task, accuracy=accuracy, arch=arch, generator=generator,
                  sequence=sequence, img_size=img_size)
    path: list[Decision] = []
    node = TREE[ROOT]
    while node.ask is not None:
        answer = query.answer(node.ask)
        nxt = dict(node.branches).get(answer)
        if nxt is None:
            raise ZooError(f"the decision tree has no branch for {node.ask}={answer!r} at {node.label!r} "
                           f"(after: {' -> '.join(map(str, path)) or 'the start'}). Options there: "
                           f"{_options(node)}. Or name a model directly (`zoo list`).")
        path.append(Decision(node.label, answer, node.ask))
        node = TREE[nxt]
    if node.model is None:
        raise ZooError(f"the decision tree ends at {node.label!r} ({node.note}); path: "
                       f"{' -> '.join(map(str, path))}.")
    if registered_only:
        _check_leaf(node, query, path)
    return Selection(node.model, tuple(path), query, node.note)


def _check_leaf(node: Node, query: Query, path: list[Decision]) -> None:
    from zoo.registry import list_models, model_info

    steps = " -> ".join(map(str, path))
    if node.model not in list_models():
        raise ZooError(f"the decision tree chose {node.model!r} ({steps}), but no such model is registered in "
                       "this installation. Name another model directly (`zoo list`).")
    tasks = model_info(node.model).tasks
    if query.task not in tasks:
        others = ", ".join(list_models(task=query.task)) or "none"
        raise ZooError(f"the decision tree reached {node.model!r} ({steps}), but it does {', '.join(tasks)}, "
                       f"not {query.task!r}. Models registered for {query.task!r}: {others}.")


def routes_to(name: str) -> list[tuple[Decision, ...]]:
    """Every path of decisions from the root that ends at the leaf ``name`` (empty: the tree never picks it)."""

    def walk(node_id: str, path: tuple[Decision, ...]) -> Iterator[tuple[Decision, ...]]:
        node = TREE[node_id]
        if node.model == name:
            yield path
        for answer, nxt in node.branches:
            yield from walk(nxt, (*path, Decision(node.label, answer, node.ask)))

    return list(walk(ROOT, ()))


def as_arguments(path: Sequence[Decision]) -> dict[str, Any]:
    """The :func:`select` arguments that take ``path``: ``{"modality": "image", "accuracy": "light"}``."""
    args: dict[str, Any] = {}
    for d in path:
        if d.ask == "kind":
            args["modality"] = "image" if d.answer == "generation" else d.answer
        elif d.ask == "size":
            if d.answer == "large":
                args["img_size"] = 224
        else:
            args[d.ask] = d.answer
    return args


def mermaid() -> str:
    """The tree as a mermaid flowchart (the README's diagram is this text); leaves show registry names."""
    lines = ["graph TD"]
    for node_id, node in TREE.items():
        shape = '{id}(["{label}"])' if node.ask is None else '{id}["{label}"]'
        lines.append("  " + shape.format(id=node_id, label=node.label))
    for node_id, node in TREE.items():
        merged: dict[str, list[str]] = {}  # several answers to one child share an edge: text/speech
        for answer, nxt in node.branches:
            merged.setdefault(nxt, []).append(answer)
        for nxt, answers in merged.items():
            lines.append(f'  {node_id} -->|"{"/".join(answers)}"| {nxt}')
    return "\n".join(lines) + "\n"
