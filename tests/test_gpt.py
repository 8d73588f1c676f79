import math

import pytest
import torch

from nanogpt.gpt import GPT, FeedForward, GPTConfig


def tiny(**kw):
    torch.manual_seed(0)
    cfg = dict(vocab_size=65, block_size=32, n_layer=2, n_head=4, n_embd=32)
    return GPT(GPTConfig(**{**cfg, **kw})).double().eval()


SHAPES = [{}, {"position": "rotary"}, {"position": "rotary", "qk_norm": True}, {"qk_norm": True}]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s.values())) or "classic")
def test_explicit_masked_softmax_equals_fused_attention(shape):
    m = tiny(**shape)
    idx = torch.randint(65, (3, 20))
    fused, _ = m(idx)
    m.set_explicit_attention(True)
    explicit, _ = m(idx)
    assert torch.allclose(fused, explicit, atol=1e-12)
    att = m.blocks[0].attn.last_attention  # (B, nh, T, T): causal rows summing to 1
    assert torch.allclose(att.sum(-1), torch.ones(3, 4, 20, dtype=att.dtype))
    assert torch.all(att.triu(diagonal=1) == 0)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "-".join(map(str, s.values())) or "classic")
@pytest.mark.parametrize("explicit", [False, True])
def test_cache_in_chunks_equals_one_full_pass(explicit, shape):
    m = tiny(**shape)
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


def test_cache_gives_each_layer_its_own_slot():
    m = tiny()
    cache = m.new_cache()
    m(torch.randint(65, (2, 7)), cache=cache)
    m(torch.randint(65, (2, 1)), cache=cache)
    assert len(cache.layers) == 2 and cache.length == 8
    shapes = {tuple(slot.keys.shape) for slot in cache.layers} | {tuple(s.values.shape) for s in cache.layers}
    assert shapes == {(2, 4, 8, 8)}  # (B, n_head, T, head_size) in every layer
    assert not torch.equal(cache.layers[0].keys, cache.layers[1].keys)


def test_embeddings_passed_in_give_the_logits_of_their_ids():
    m = tiny()
    idx = torch.randint(65, (2, 9))
    pos = m.wpe(torch.arange(9))
    assert torch.equal(m(idx)[0], m(tok_emb=m.wte(idx))[0])
    assert torch.equal(m(idx)[0], m(tok_emb=m.wte(idx), pos_emb=pos)[0])
    assert not torch.allclose(m(idx)[0], m(idx, pos_emb=torch.zeros_like(pos))[0])


def test_relu_squared_is_relu_then_square_and_checkpoints_keep_the_choice():
    import torch.nn.functional as F

    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=2, n_embd=16, activation="relu2"))
    ff, x = m.blocks[0].mlp, torch.randn(2, 5, 16)
    assert torch.equal(ff(x), ff.proj(F.relu(ff.fc(x)) ** 2))
    from nanogpt.models import build_model, model_config_dict

    again = build_model("gpt", model_config_dict(m))
    assert again.config.activation == "relu2" and again.blocks[0].mlp.relu_squared


def test_rotary_turns_pairs_so_that_scores_depend_on_distance_only():
    from nanogpt.gpt import Rotary

    torch.manual_seed(0)
    rot = Rotary(head_size=8, block_size=40).double()
    q, k = torch.randn(2, 1, 1, 8, dtype=torch.float64)  # (B=1, T=1, heads=1, hs=8) each
    scores = [(rot(q, p + 5) * rot(k, p)).sum() for p in (0, 7, 30)]  # query 5 positions after the key
    assert torch.allclose(torch.stack(scores), scores[0].expand(3), atol=1e-6)  # angles kept in float32
    assert torch.allclose(rot(q, 13).norm(), q.norm())  # a rotation: lengths unchanged
    assert torch.equal(rot(q, 0), q)  # position 0: angle 0
    x1, x2 = q.chunk(2, dim=-1)  # pair i is (x1[i], x2[i]); pair 0 turns by p radians
    turned = rot(q, 2)
    assert torch.allclose(turned[..., 0], x1[..., 0] * math.cos(2) - x2[..., 0] * math.sin(2), atol=1e-6)


def test_rotary_model_has_no_position_table_and_checkpoints_keep_the_choice():
    from nanogpt.models import build_model, model_config_dict

    m = tiny(position="rotary", qk_norm=True)
    assert m.wpe is None and "wpe.weight" not in m.state_dict()
    assert m.num_params() == m.num_params(non_embedding=False)
    again = build_model("gpt", model_config_dict(m))
    assert (again.config.position, again.config.qk_norm) == ("rotary", True)
    assert again.blocks[0].attn.rotary is not None and again.blocks[0].attn.qk_norm
    again.load_state_dict(m.state_dict())  # strict: no table to miss, no buffers saved


def test_the_feed_forward_widens_four_times_and_projects_back():
    block = tiny().blocks[0]
    assert isinstance(block.mlp, FeedForward)  # `mlp` is GPT-2's name for it, kept in checkpoints
    assert block.mlp.fc.weight.shape == (4 * 32, 32) and block.mlp.proj.weight.shape == (32, 4 * 32)
