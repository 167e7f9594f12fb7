"""Incremental decoding: with a key/value cache (or a carried recurrent state) greedy, beam search and
sampling give exactly the tokens of re-feeding the whole output (the reference, ``use_cache=False``),
for every kind of positions; beams stop once every hypothesis has ended, and finished sources leave
the batch."""

import pytest
import torch

import zoo
from zoo.decoding import beam_search, greedy_decode, sample
from zoo.layers import KVCache, MultiHeadAttention, RotaryEmbedding

SEQ2SEQ = [
    ("transformer", {"dim": 32, "depth": 2, "pos": "sinusoidal"}),
    ("transformer", {"dim": 32, "depth": 2, "pos": "learned", "norm_first": False}),
    ("transformer", {"dim": 32, "depth": 2, "pos": "rope"}),
    ("seq2seq_lstm", {"embed_dim": 32, "hidden_size": 32}),
    ("seq2seq_lstm", {"embed_dim": 32, "hidden_size": 32, "cell": "gru", "attention": False}),
]
LMS = [
    ("gpt", {"dim": 32, "depth": 2, "max_len": 32, "pos": "learned"}),
    ("gpt", {"dim": 32, "depth": 2, "max_len": 32, "pos": "rope"}),
    ("gpt", {"dim": 32, "depth": 2, "max_len": 32, "pos": "sinusoidal"}),
    ("lstm", {"task": "lm", "embed_dim": 32, "hidden_size": 32}),
]


def _seq2seq(name, kwargs, vocab=40):
    torch.manual_seed(0)
    # two vocabularies: untied embeddings, so that a random model's output varies with position and history
    model = zoo.create_model(name, src_vocab_size=vocab, tgt_vocab_size=vocab + 1, **kwargs).eval()
    src = torch.randint(4, vocab, (6, 9))
    mask = torch.zeros_like(src, dtype=torch.bool)
    mask[1, 6:] = mask[4, 3:] = True  # padded sources
    src[mask] = 0
    return model, src, mask


@pytest.mark.parametrize("name,kwargs", SEQ2SEQ, ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v.values())))
def test_cached_greedy_and_beam_give_the_tokens_of_re_feeding(name, kwargs):
    model, src, mask = _seq2seq(name, kwargs)
    kw = dict(bos_id=2, eos_id=3, max_len=20)
    for decode in (greedy_decode, lambda *a, **k: beam_search(*a, beam_size=4, **k)):
        fast, slow = decode(model, src, mask, use_cache=True, **kw), decode(model, src, mask, use_cache=False, **kw)
        assert torch.equal(fast, slow)
        assert fast.shape[0] == 6 and 1 <= fast.shape[1] <= 20


def test_the_cache_is_really_used():
    model, src, mask = _seq2seq(*SEQ2SEQ[0])
    widths = []
    decode = model.decode
    model.decode = lambda tgt, *a, **k: (widths.append(tgt.shape[1]), decode(tgt, *a, **k))[1]
    beam_search(model, src, mask, beam_size=4, bos_id=2, eos_id=3, max_len=12)
    assert widths[0] == 1 and set(widths) == {1}  # one new token per step
    widths.clear()
    beam_search(model, src, mask, beam_size=4, bos_id=2, eos_id=3, max_len=12, use_cache=False)
    assert widths == list(range(1, len(widths) + 1))  # the whole output so far


@pytest.mark.parametrize("name,kwargs", LMS, ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v.values())))
def test_cached_sampling_gives_the_tokens_of_re_feeding(name, kwargs):
    torch.manual_seed(0)
    model = zoo.create_model(name, vocab_size=30, **kwargs).eval()
    with torch.no_grad():  # GPT's N(0, 0.02) start is nearly uniform: peakier, so every logit matters
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, p.shape[-1] ** -0.5)
    prompt = torch.randint(0, 30, (3, 4))
    for kw in ({"top_k": 5}, {"temperature": 0.7}, {"temperature": 0}):
        fast = sample(model, prompt, max_new_tokens=20, generator=torch.Generator().manual_seed(1), **kw)
        slow = sample(model, prompt, max_new_tokens=20, generator=torch.Generator().manual_seed(1), use_cache=False,
                      **kw)
        assert fast.shape == (3, 24) and torch.equal(fast, slow)


def test_sampling_past_max_len_slides_the_window_like_re_feeding():
    torch.manual_seed(0)
    model = zoo.create_model("gpt", vocab_size=30, max_len=8, dim=32, depth=1).eval()
    prompt = torch.randint(0, 30, (2, 3))
    fast = sample(model, prompt, max_new_tokens=12, generator=torch.Generator().manual_seed(2))
    slow = sample(model, prompt, max_new_tokens=12, generator=torch.Generator().manual_seed(2), use_cache=False)
    assert fast.shape == (2, 15) and torch.equal(fast, slow)


@pytest.mark.parametrize("rope", [False, True])
def test_self_attention_step_by_step_with_a_cache_equals_causal_attention(rope):
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 2, rope=RotaryEmbedding(8, 32) if rope else None).eval()
    x = torch.randn(2, 7, 16)
    full = attn(x, is_causal=True)
    cache = KVCache()
    first = attn(x[:, :3], is_causal=True, cache=cache)  # a prompt of 3, then one position at a time
    steps = [first] + [attn(x[:, t : t + 1], is_causal=True, cache=cache) for t in range(3, 7)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)
    assert len(cache) == 7


def test_cross_attention_projects_the_memory_once():
    torch.manual_seed(0)
    attn = MultiHeadAttention(16, 2).eval()
    x, memory = torch.randn(2, 1, 16), torch.randn(2, 5, 16)
    cache = KVCache(static=True)
    first = attn(x, memory, cache=cache)
    k = cache.k.clone()
    torch.testing.assert_close(attn(x, memory * 0, cache=cache), first)  # the cached memory is what counts
    assert torch.equal(cache.k, k) and len(cache) == 5
    cache.reorder(torch.tensor([1, 0]))  # beams of one source share the memory: nothing moves
    assert torch.equal(cache.k, k)


def test_a_beam_step_moves_the_self_attention_cache_rows_with_their_hypotheses():
    cache = KVCache()
    k = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 2, 3, 5)  # row i holds the value i
    cache.append(k, -k)
    cache.reorder(torch.tensor([0, 0, 3, 2]))  # beam 1 continues beam 0; beams 2 and 3 swap
    assert cache.k[:, 0, 0, 0].tolist() == [0, 0, 3, 2] and cache.v[:, 1, 2, 4].tolist() == [0, 0, -3, -2]
    cache.append(k[:, :, :1] + 10, k[:, :, :1])  # the next step writes after the reordered past
    assert cache.k.shape == (4, 2, 4, 5) and cache.k[:, 0, 3, 0].tolist() == [10, 11, 12, 13]
    cache.select(torch.tensor([2, 3]))  # a source finished: its rows leave
    assert cache.k[:, 0, 0, 0].tolist() == [3, 2] and len(cache) == 4


class _CountingToy(torch.nn.Module):
    """Source row b asks for ``src[b, 0]`` tokens "5" then <eos> (3), whatever the beam; records batch sizes."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def encode(self, src, mask):
        return src[:, :1].float()  # (B, 1): the length each source asks for

    def decode(self, tgt, memory, mask):
        self.batches.append(tgt.shape[0])
        want = memory[:, 0].long()  # (B,)
        written = tgt.shape[1] - 1  # tokens after <bos>
        going = (written < want)[:, None]  # (B, 1)
        logits = torch.where(going, -5.0, -20.0).expand(-1, 8).clone()  # once due, nothing beats <eos>
        logits[:, 5] = torch.where(going[:, 0], 2.0, -20.0)
        logits[:, 3] = torch.where(going[:, 0], -9.0, 2.0)
        return logits[:, None].expand(-1, tgt.shape[1], -1)  # (B, T, V): only the last step is read


def test_beams_stop_once_every_hypothesis_has_ended_and_finished_sources_leave_the_batch():
    src = torch.tensor([[1, 0], [4, 0]])  # source 0 ends after 1 token, source 1 after 4
    toy = _CountingToy()
    out = beam_search(toy, src, None, beam_size=3, bos_id=2, eos_id=3, max_len=30)
    assert out.tolist() == [[5, 3, 3, 3, 3], [5, 5, 5, 5, 3]]  # padded with <eos> after the end
    # every hypothesis ends at the step its source is due: 5 steps, not 30; the first source's 3 rows
    # leave the batch once all of them have ended
    assert toy.batches == [6, 6, 3, 3, 3]
    toy.batches.clear()
    assert greedy_decode(toy, src, None, bos_id=2, eos_id=3, max_len=30).tolist() == out.tolist()
    assert toy.batches == [2, 2, 1, 1, 1]
