"""Attention, positions and the sequence models: what users rely on (masks block, padding is inert,
RoPE is relative, decoding is consistent), checked against references and formulas."""

import math

import pytest
import torch

import zoo
from zoo.decoding import beam_search, greedy_decode, sample
from zoo.layers import MultiHeadAttention, RotaryEmbedding, SinusoidalPositionalEncoding, causal_mask
from zoo.layers.timeseries import PatchForecaster, RevIN
from zoo.models.rnn import RNNClassifier, RNNForecaster, RNNLanguageModel


def _reference_mha(ours: MultiHeadAttention) -> torch.nn.MultiheadAttention:
    ref = torch.nn.MultiheadAttention(ours.dim, ours.num_heads, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.in_proj.weight)
        ref.in_proj_bias.copy_(ours.in_proj.bias)
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ref.eval()


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_matches_torch_multihead_attention(causal):
    torch.manual_seed(0)
    ours = MultiHeadAttention(32, 4).eval()
    ref = _reference_mha(ours)
    x = torch.randn(3, 7, 32)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[1, 5:] = True
    mask = causal_mask(7) if causal else None
    expected, expected_w = ref(x, x, x, key_padding_mask=pad, attn_mask=mask, average_attn_weights=False)
    torch.testing.assert_close(ours(x, key_padding_mask=pad, is_causal=causal), expected, atol=1e-5, rtol=1e-4)
    got = ours(x, key_padding_mask=pad, is_causal=causal, need_weights=True)
    torch.testing.assert_close(got.out, expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got.weights, expected_w, atol=1e-5, rtol=1e-4)


def test_cross_attention_matches_torch_multihead_attention():
    torch.manual_seed(1)
    ours = MultiHeadAttention(16, 2).eval()
    ref = _reference_mha(ours)
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[0, 6:] = True
    expected, _ = ref(x, memory, memory, key_padding_mask=pad)
    torch.testing.assert_close(ours(x, memory, key_padding_mask=pad), expected, atol=1e-5, rtol=1e-4)


def test_attention_weights_respect_the_causal_mask():
    w = MultiHeadAttention(8, 2)(torch.randn(1, 6, 8), is_causal=True, need_weights=True).weights
    assert torch.all(w.masked_select(causal_mask(6)) == 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 2, 6))


def test_sinusoidal_values_match_the_formula():
    pe = SinusoidalPositionalEncoding(16, 50).table
    for pos in (0, 1, 7, 49):
        for i in range(8):
            angle = pos / 10000 ** (2 * i / 16)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_rope_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    rope = RotaryEmbedding(8, 64)
    q, k = torch.randn(8), torch.randn(8)

    def score(m: int, n: int) -> float:
        qs = q.expand(1, 1, 64, 8)  # the same vectors placed at every position
        ks = k.expand(1, 1, 64, 8)
        return float(rope(qs)[0, 0, m] @ rope(ks)[0, 0, n])

    assert score(10, 3) == pytest.approx(score(40, 33), abs=1e-4)
    assert score(5, 5) == pytest.approx(score(60, 60), abs=1e-4)
    assert score(10, 3) != pytest.approx(score(10, 4), abs=1e-3)  # but it does depend on the offset


CAUSAL = [("gpt", {}), ("gpt", {"pos": "rope"}), ("gpt", {"pos": "sinusoidal"}), ("lstm", {"task": "lm"}),
          ("gru", {"task": "lm"}), ("rnn", {"task": "lm"})]


@pytest.mark.parametrize("name,kwargs", CAUSAL)
def test_language_models_never_see_the_future(name, kwargs):
    torch.manual_seed(0)
    model = zoo.create_model(name, vocab_size=50, **kwargs).eval()
    x = torch.randint(0, 50, (2, 16))
    y = x.clone()
    y[:, 9:] = torch.randint(0, 50, (2, 7))  # change every token after step 8
    a, b = model(x), model(y)
    torch.testing.assert_close(a[:, :9], b[:, :9], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_transformer_decoder_never_sees_the_future():
    torch.manual_seed(0)
    model = zoo.create_model("transformer", src_vocab_size=60, tgt_vocab_size=60, dim=32, depth=2).eval()
    src, tgt = torch.randint(4, 60, (2, 8)), torch.randint(4, 60, (2, 10))
    changed = tgt.clone()
    changed[:, 6:] = 5
    torch.testing.assert_close(model(src, tgt)[:, :6], model(src, changed)[:, :6], atol=1e-5, rtol=1e-4)


CLASSIFIERS = [("transformer_encoder", {}), ("lstm", {"bidirectional": True}), ("gru", {"pool": "max"}),
               ("rnn", {"pool": "mean", "bidirectional": True})]


@pytest.mark.parametrize("name,kwargs", CLASSIFIERS)
def test_padding_does_not_change_a_sentence_classification(name, kwargs):
    torch.manual_seed(0)
    model = zoo.create_model(name, vocab_size=50, num_classes=3, **kwargs).eval()
    short = torch.randint(1, 50, (1, 6))
    padded = torch.cat([short, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = padded == 0
    torch.testing.assert_close(model(padded, mask), model(short, torch.zeros_like(short, dtype=torch.bool)),
                               atol=1e-5, rtol=1e-4)
    # without the mask the padding would leak in: the mask is what makes it inert
    assert not torch.allclose(model(padded), model(short), atol=1e-5)


SMALL_SEQ2SEQ = {"transformer": {"dim": 32, "depth": 2}, "seq2seq_lstm": {"embed_dim": 32, "hidden_size": 32}}


@pytest.mark.parametrize("name", ["transformer", "seq2seq_lstm"])
def test_source_padding_does_not_change_a_translation(name):
    torch.manual_seed(0)
    model = zoo.create_model(name, src_vocab_size=60, tgt_vocab_size=60, **SMALL_SEQ2SEQ[name]).eval()
    src = torch.randint(4, 60, (1, 7))
    padded = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    tgt = torch.randint(4, 60, (1, 5))
    torch.testing.assert_close(model(padded, tgt, src_padding_mask=padded == 0), model(src, tgt),
                               atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["transformer", "seq2seq_lstm"])
def test_beam_search_with_one_beam_is_greedy_decoding(name):
    torch.manual_seed(0)
    model = zoo.create_model(name, src_vocab_size=40, tgt_vocab_size=40, **SMALL_SEQ2SEQ[name]).eval()
    src = torch.randint(4, 40, (5, 8))
    mask = torch.zeros_like(src, dtype=torch.bool)
    mask[2, 5:] = True
    kw = dict(bos_id=2, eos_id=3, max_len=15)
    greedy = greedy_decode(model, src, mask, **kw)
    assert torch.equal(beam_search(model, src, mask, beam_size=1, **kw), greedy)
    wide = beam_search(model, src, mask, beam_size=4, **kw)
    assert wide.shape[0] == 5 and wide.shape[1] <= 15


def test_beam_search_finds_a_more_likely_sequence_than_greedy():
    """Greedy takes "a" (0.6) and ends with P("a <eos>") = 0.18; a beam of 3 finds "b <eos>" (0.396)."""

    class Toy(torch.nn.Module):  # ids: 2 <bos>, 3 <eos>, 4 "a", 5 "b", 6-12 fillers
        def encode(self, src, mask):
            return src.float()

        def decode(self, tgt, memory, mask):
            probs = torch.full((tgt.shape[0], tgt.shape[1], 13), 1e-9)
            last = tgt[:, -1]
            probs[last == 2, -1, 4] = 0.6  # after <bos>: "a" 0.6, "b" 0.4
            probs[last == 2, -1, 5] = 0.4
            probs[last == 4, -1, 3] = 0.3  # after "a": <eos> 0.3, seven fillers 0.1 each
            for filler in range(6, 13):
                probs[last == 4, -1, filler] = 0.1
            probs[last == 5, -1, 3] = 0.99  # after "b": <eos> 0.99
            probs[last >= 6, -1, 3] = 1.0
            probs[last == 3, -1, 3] = 1.0
            return probs.log()

    src = torch.zeros(1, 3, dtype=torch.long)
    kw = dict(bos_id=2, eos_id=3, max_len=4)
    assert greedy_decode(Toy(), src, None, **kw)[0, 0] == 4
    assert beam_search(Toy(), src, None, beam_size=3, **kw)[0, :2].tolist() == [5, 3]


def test_sampling_is_reproducible_and_greedy_at_temperature_zero():
    torch.manual_seed(0)
    model = zoo.create_model("gpt", vocab_size=30, max_len=8, dim=32, depth=1).eval()
    prompt = torch.randint(0, 30, (2, 3))
    a = sample(model, prompt, max_new_tokens=10, top_k=5, generator=torch.Generator().manual_seed(1))
    b = sample(model, prompt, max_new_tokens=10, top_k=5, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2, 13) and torch.equal(a, b) and torch.equal(a[:, :3], prompt)
    greedy = sample(model, prompt, max_new_tokens=1, temperature=0)
    assert torch.equal(greedy[:, -1], model(prompt)[:, -1].argmax(-1))


def test_bidirectional_language_model_is_refused():
    with pytest.raises(ValueError, match="bidirectional"):
        zoo.create_model("lstm", task="lm", bidirectional=True)


@pytest.mark.parametrize("name,kwargs", [("lstm", {"patch_len": 16}), ("gru", {"patch_len": 1}),
                                         ("transformer_encoder", {})])
@pytest.mark.parametrize("channels", [(7, 7), (7, 1)])
def test_forecasters_map_a_window_to_the_horizon(name, kwargs, channels):
    cin, cout = channels
    model = zoo.create_model(name, task="forecast", in_features=cin, out_features=cout, horizon=24, seq_len=48,
                             **kwargs).eval()
    x = torch.randn(3, 48, cin)
    y = model(x)
    assert y.shape == (3, 24, cout)
    # RevIN: shifting and scaling the input window shifts and scales the forecast the same way
    torch.testing.assert_close(model(x * 3 + 5), y * 3 + 5, atol=1e-3, rtol=1e-3)


def test_patch_forecaster_tokens_are_the_window_cut_into_patches():
    class Spy(PatchForecaster):
        def forward_tokens(self, tokens):
            self.seen = tokens
            return torch.zeros(tokens.shape[0], self.head_features)

    x = torch.randn(2, 12, 3)
    joint = Spy(in_features=3, out_features=1, horizon=5, seq_len=12, patch_len=4, patch_stride=4, revin=False)
    assert joint(x).shape == (2, 5, 1)
    assert joint.seen.shape == (2, 3, 12)  # (B, P, C*patch_len): all channels of a patch in one token
    assert torch.equal(joint.seen[1, 2], x[1, 8:12].T.flatten())  # channel by channel, steps 8..11
    independent = Spy(in_features=3, out_features=3, horizon=5, seq_len=12, patch_len=4, patch_stride=2,
                      revin=False)
    assert independent(x).shape == (2, 5, 3)
    assert independent.seen.shape == (6, 6, 4)  # (B*C, P, patch_len); the end padded by one stride
    assert torch.equal(independent.seen[1 * 3 + 2, 1], x[1, 2:6, 2])  # series (b=1, c=2), steps 2..5
    with pytest.raises(ValueError, match="newest steps would be dropped"):
        Spy(in_features=3, out_features=3, horizon=5, seq_len=13, patch_len=4, patch_stride=2, revin=False)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_one_recurrent_name_builds_the_head_its_task_names(name):
    kw = dict(vocab_size=50, in_features=3, horizon=4, seq_len=8)
    assert type(zoo.create_model(name, **kw)) is RNNClassifier  # task="classify" is the default
    assert type(zoo.create_model(name, task="lm", **kw)) is RNNLanguageModel
    assert type(zoo.create_model(name, task="forecast", **kw)) is RNNForecaster
    with pytest.raises(ValueError, match="choose 'classify', 'lm' or 'forecast'"):
        zoo.create_model(name, task="translate", **kw)


def test_revin_round_trip():
    x = torch.randn(4, 20, 3) * 5 + 2
    revin = RevIN(3)
    z, stats = revin.normalize(x)
    torch.testing.assert_close(z.mean(1), torch.zeros(4, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(revin.denormalize(z, stats), x, atol=1e-4, rtol=1e-4)


def test_word2vec_neighbours_exclude_the_word_itself():
    model = zoo.create_model("word2vec", vocab_size=20, embed_dim=8)
    with torch.no_grad():
        model.in_embed.weight.copy_(torch.randn(20, 8))
        model.in_embed.weight[5] = model.in_embed.weight[3] * 2  # same direction as word 3
    near = model.most_similar(torch.tensor([3, 5]), 2)
    assert near.indices[0, 0] == 5 and near.indices[1, 0] == 3
    assert 3 not in near.indices[0].tolist() and 5 not in near.indices[1].tolist()
