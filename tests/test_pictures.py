"""The pictures a student looks at show the model's real numbers: attention weights as the layer computes them
(masks respected), the rollout formula, the first layer's own kernels, the embeddings' principal plane, the
logged curves; and a run with the switch on writes them."""

import math

import pytest
import torch
import torch.nn.functional as F

import zoo
from tasks.runner import run
from tests.conftest import SMALL_DATA, SMALL_MODEL, fast_overrides
from zoo.layers import MultiHeadAttention, capture_attention
from zoo.pictures import (
    attention_rollout,
    attention_weights,
    feature_maps,
    first_conv,
    pca_2d,
    plot_attention_matrices,
    plot_embeddings,
    plot_kernels,
    plot_vit_attention,
    vit_attention,
)
from zoo.plots import plot_learning_curves


def test_captured_attention_equals_a_manual_softmax_and_leaves_the_output_alone():
    torch.manual_seed(0)
    attn = MultiHeadAttention(8, 2).eval()
    x = torch.randn(2, 5, 8)
    padding = torch.tensor([[False] * 5, [False, False, False, True, True]])  # the second row: 2 padded keys
    plain = attn(x, key_padding_mask=padding)
    with capture_attention(attn) as captured:
        out = attn(x, key_padding_mask=padding)
    w = captured[""]  # the module itself: its name is ""
    torch.testing.assert_close(out, plain, atol=1e-6, rtol=1e-5)  # the explicit path computes the same output
    assert attn.record is None  # off again after the block: the fused kernel is back

    q, k, _ = attn.in_proj(x).chunk(3, dim=-1)
    q, k = (t.view(2, 5, 2, 4).transpose(1, 2) for t in (q, k))  # (B, T, D) -> (B, nh, T, hd)
    scores = q @ k.transpose(-2, -1) / math.sqrt(4)  # (B, nh, T, T)
    scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
    torch.testing.assert_close(w, scores.softmax(-1))
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 5))
    assert torch.equal(w[1, :, :, 3:], torch.zeros(2, 5, 2))  # padded keys get exactly nothing


def test_a_gpts_captured_self_attention_never_looks_ahead():
    torch.manual_seed(0)
    model = zoo.create_model("gpt", vocab_size=20, max_len=16, dim=16, depth=2, num_heads=2)
    weights = attention_weights(model, torch.randint(0, 20, (3, 9)))
    assert len(weights) == 2  # one per layer, in order
    for w in weights:
        assert w.shape == (3, 2, 9, 9)
        assert torch.equal(w.triu(1), torch.zeros_like(w))  # causal: zero above the diagonal
        torch.testing.assert_close(w.sum(-1), torch.ones(3, 2, 9))
        assert (w.diagonal(dim1=-2, dim2=-1) > 0).all()  # and each token sees itself


def test_translation_cross_attention_is_source_by_target_and_skips_source_padding():
    torch.manual_seed(0)
    model = zoo.create_model("transformer", src_vocab_size=30, tgt_vocab_size=30, dim=16, depth=2, num_heads=2)
    src = torch.tensor([[5, 6, 7, 8, 0, 0], [5, 6, 7, 8, 9, 10]])  # 0 = <pad>
    tgt = torch.randint(4, 30, (2, 4))
    cross = attention_weights(model, src, tgt, which="cross_attn", src_padding_mask=src == 0)
    assert len(cross) == 2 and cross[-1].shape == (2, 2, 4, 6)  # (B, nh, T target, S source)
    assert torch.equal(cross[-1][0, :, :, 4:], torch.zeros(2, 4, 2))
    torch.testing.assert_close(cross[-1].sum(-1), torch.ones(2, 2, 4))

    matrix = cross[-1][1].mean(0)  # (T, S): the second sentence, mean of heads
    rows, cols = ["a", "b", "c", "d"], [f"s{i}" for i in range(6)]
    ax = plot_attention_matrices([matrix], row_labels=[rows], col_labels=[cols]).axes[0]
    torch.testing.assert_close(torch.as_tensor(ax.images[0].get_array().data), matrix)
    assert [t.get_text() for t in ax.get_xticklabels()] == cols  # source tokens across
    assert [t.get_text() for t in ax.get_yticklabels()] == rows  # target tokens down


def test_attention_rollout_of_a_two_layer_toy_matches_the_hand_computation():
    # layer 1: heads average to [[.5, .5], [.5, .5]]; + I, rows renormalised: [[.75, .25], [.25, .75]]
    layer1 = torch.tensor([[[1.0, 0.0], [0.5, 0.5]], [[0.0, 1.0], [0.5, 0.5]]])[None]  # (1, nh=2, 2, 2)
    # layer 2: both heads [[1, 0], [1, 0]]; + I, renormalised: [[1, 0], [.5, .5]]
    layer2 = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]] * 2)[None]
    # rollout = A2 @ A1 = [[.75, .25], [.5 * .75 + .5 * .25, .5 * .25 + .5 * .75]]
    expected = torch.tensor([[[0.75, 0.25], [0.5, 0.5]]])
    torch.testing.assert_close(attention_rollout([layer1, layer2]), expected)
    torch.testing.assert_close(attention_rollout([layer1]), torch.tensor([[[0.75, 0.25], [0.25, 0.75]]]))


def test_vit_maps_are_the_class_tokens_rows_of_the_last_layer_and_of_the_rollout():
    torch.manual_seed(0)
    model = zoo.create_model("vit_tiny", in_chans=1, img_size=8, patch_size=4, embed_dim=16, depth=2, num_heads=2,
                             num_classes=3)
    x = torch.randn(3, 1, 8, 8)
    maps = vit_attention(model, x)
    weights = attention_weights(model, x)  # 2 x (3, 2, 5, 5): the class token and a 2x2 grid of patches
    torch.testing.assert_close(maps.heads, weights[-1][:, :, 0, 1:].reshape(3, 2, 2, 2))
    torch.testing.assert_close(maps.mean, weights[-1][:, :, 0, 1:].mean(1).reshape(3, 2, 2))
    torch.testing.assert_close(maps.rollout, attention_rollout(weights)[:, 0, 1:].reshape(3, 2, 2))
    fig = plot_vit_attention(model, x[:2], mean=[0.5], std=[0.25])
    assert len(fig.axes) == 2 * (3 + 2)  # per image: the image, the mean, the rollout and both heads
    overlay = fig.axes[1].images[1].get_array()  # the first image's mean-of-heads map over it
    torch.testing.assert_close(torch.as_tensor(overlay.data), maps.mean[0])

    pooled = zoo.create_model("vit_tiny", in_chans=1, img_size=8, patch_size=4, embed_dim=16, depth=2, num_heads=2,
                              num_classes=3, pool="mean")  # no class token: what the mean of all tokens looks at
    weights = attention_weights(pooled, x)  # 2 x (3, 2, 4, 4)
    torch.testing.assert_close(vit_attention(pooled, x).rollout, attention_rollout(weights).mean(1).reshape(3, 2, 2))


def test_pca_coordinates_project_the_centred_embeddings_on_their_two_principal_directions():
    g = torch.Generator().manual_seed(0)
    vectors = torch.randn(40, 6, generator=g) * torch.tensor([5.0, 3.0, 1.0, 0.5, 0.2, 0.1]) + 2.0
    xy = pca_2d(vectors)
    centred = (vectors - vectors.mean(0)).double()
    _, eigvecs = torch.linalg.eigh(centred.T @ centred)  # ascending: the last two are the principal directions
    expected = (centred @ eigvecs[:, [-1, -2]]).float()
    for j in range(2):  # an eigenvector's sign is arbitrary
        assert torch.allclose(xy[:, j], expected[:, j], atol=1e-4) or torch.allclose(xy[:, j], -expected[:, j], atol=1e-4)
    assert xy[:, 0].var() > xy[:, 1].var()

    labels = [f"w{i}" for i in range(40)]
    ax = plot_embeddings(vectors, labels).axes[0]
    torch.testing.assert_close(torch.as_tensor(ax.collections[0].get_offsets().data).float(), xy)
    assert [t.get_text() for t in ax.texts] == labels


def test_kernel_picture_draws_the_first_layers_real_weights():
    model = zoo.create_model("lenet5", pretrained="mnist")
    conv = first_conv(model)
    assert conv is model.features[0]  # LeNet-5's C1
    fig = plot_kernels(model)
    drawn = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    assert len(drawn) == 6
    for i, image in enumerate(drawn):
        torch.testing.assert_close(torch.as_tensor(image.data), conv.weight[i, 0].detach())

    rgb = zoo.create_model("resnet20")
    w = first_conv(rgb).weight.detach()[0]  # (3, 3, 3): a colour kernel, min-max scaled
    first = next(ax for ax in plot_kernels(rgb).axes if ax.images).images[0].get_array()
    torch.testing.assert_close(torch.as_tensor(first.data).float(), ((w - w.min()) / (w.max() - w.min())).permute(1, 2, 0))

    x = torch.randn(2, 1, 28, 28)
    maps = feature_maps(model, x)
    torch.testing.assert_close(maps, F.conv2d(x, conv.weight, conv.bias, padding=conv.padding))


def test_learning_curves_draw_the_logged_values(tmp_path):
    csv = tmp_path / "metrics.csv"
    csv.write_text("epoch,step,train/loss,val/loss,val/acc\n"
                   "0,0,2.3,,\n0,49,1.1,,\n0,99,,0.9,0.7\n1,149,0.6,,\n1,199,,0.5,0.85\n")
    losses, metrics = plot_learning_curves(csv).axes[:2]
    train, val = losses.lines
    assert list(train.get_xdata()) == [0, 49, 149] and list(train.get_ydata()) == [2.3, 1.1, 0.6]
    assert list(val.get_xdata()) == [99, 199] and list(val.get_ydata()) == [0.9, 0.5]
    assert list(metrics.lines[0].get_ydata()) == [0.7, 0.85]
    with pytest.raises(zoo.ZooError, match="no train/ or val/ metric"):
        plot_learning_curves(tmp_path / "missing.csv")


@pytest.mark.parametrize("model,data,logger,expected", [
    ("lenet5", "mnist", "many", ["kernels", "feature_maps"]),
    ("gpt", "tiny_shakespeare", "csv", ["self_attention", "embeddings"]),
])
def test_a_run_with_pictures_on_writes_them(compose_cfg, one_thread, tmp_path, model, data, logger, expected):
    cfg = compose_cfg(*fast_overrides(f"model={model}", f"data={data}", f"logger={logger}",
                                      "+callbacks/pictures=default", "callbacks.pictures.line_tokens=12",
                                      *SMALL_MODEL.get(model, []), *SMALL_DATA.get(data, [])))
    run(cfg)
    assert (tmp_path / "learning_curves.png").stat().st_size > 1000
    for name in expected:
        assert (tmp_path / "images" / f"{name}-test.png").stat().st_size > 1000, name
    if logger == "many":  # and the same figures in TensorBoard
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
        assert {"learning_curves", *(f"test/{n}" for n in expected)} <= set(events.Tags()["images"])
