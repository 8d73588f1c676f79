import math

import pytest
import torch

from nanogpt.gpt import GPT, GPTConfig


def tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=65, block_size=32, n_layer=2, n_head=4, n_embd=32)
    return GPT(GPTConfig(**{**cfg, **kw})).double().eval()


def test_explicit_masked_softmax_equals_fused_attention():
    m = tiny()
    idx = torch.randint(65, (3, 20))
    fused, _ = m(idx)
    m.set_explicit_attention(True)
    explicit, _ = m(idx)
    assert torch.allclose(fused, explicit, atol=1e-12)
    att = m.blocks[0].attn.last_attention  # (B, nh, T, T): causal rows summing to 1
    assert torch.allclose(att.sum(-1), torch.ones(3, 4, 20, dtype=att.dtype))
    assert torch.all(att.triu(diagonal=1) == 0)


@pytest.mark.parametrize("explicit", [False, True])
def test_cache_in_chunks_equals_one_full_pass(explicit):
    m = tiny()
    m.set_explicit_attention(explicit)
    idx = torch.randint(65, (2, 20))
    full, _ = m(idx)
    cache, pieces = m.new_cache(), []
    for a, b in [(0, 5), (5, 9)] + [(t, t + 1) for t in range(9, 20)]:
        pieces.append(m(idx[:, a:b], cache=cache)[0])
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-12)
    assert cache.length == 20


def test_future_tokens_do_not_change_past_logits():
    m = tiny()
    idx = torch.randint(65, (1, 16))
    changed = idx.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 65
    assert torch.allclose(m(idx)[0][:, :10], m(changed)[0][:, :10], atol=1e-12)


def test_loss_at_init_is_near_ln_vocab():
    m = tiny()
    idx = torch.randint(65, (8, 32))
    _, loss = m(idx, idx)
    assert abs(loss.item() - math.log(65)) < 0.1


def test_config_rejects_heads_that_do_not_divide_width():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=30, n_head=4)


def test_tied_head_shares_the_embedding():
    m = tiny(tie_weights=True)
    assert m.head.weight is m.wte.weight
    assert m.num_params() < tiny().num_params()
