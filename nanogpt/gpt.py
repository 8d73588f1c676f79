"""Stage 3: the Transformer. A GPT written to be read top to bottom, like the paper's figure.

    tokens -> token embedding + position embedding
           -> n_layer x Block( x + Attention(LayerNorm(x)),  x + FeedForward(LayerNorm(x)) )
           -> LayerNorm -> linear head -> logits over the vocabulary

Pre-LayerNorm blocks (as in GPT-2) keep the residual stream a clean sum, which trains stably.
The head is untied from the token embedding by default: with a 65-character vocabulary the tied
matrix saves only 65 x n_embd weights, and untied heads reach a slightly lower character loss.
`tie_weights=True` ties them, as GPT-2 does, where the vocabulary is large (GPT-2 BPE).
Generation's key/value cache sits at the bottom: `forward(cache=...)` hands each block its slot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    """The shape of a GPT."""

    vocab_size: int = 65
    block_size: int = 128  # the longest context the model sees
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers
    activation: str = "gelu"  # the feed-forward's non-linearity: "gelu", or "relu2" (ReLU, squared)
    position: str = "learned"  # "learned": a table added to the input; "rotary": q and k turned by position
    qk_norm: bool = False  # RMS-normalise each head's queries and keys before their dot product
    tie_weights: bool = False  # share the token embedding with the output head

    def __post_init__(self):
        if self.n_embd % self.n_head != 0:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


class Rotary(nn.Module):
    """Rotary position embedding (RoFormer, Su et al. 2021): positions as rotations, not a table.

    Each head's vector is split in two halves, read as hs/2 pairs (x1[i], x2[i]); the pair i at
    position p is turned by the angle p * base^(-2i/hs). Turning a query at p and a key at p' turns
    their dot product by (p - p') only, so attention sees how far back a key is, not where it is.
    """

    def __init__(self, head_size: int, block_size: int, base: float = 10000.0):
        super().__init__()
        speed = base ** -(torch.arange(0, head_size, 2, dtype=torch.float64) / head_size)  # (hs/2,)
        angle = torch.arange(block_size, dtype=torch.float64)[:, None] * speed  # (block_size, hs/2)
        # Not parameters, and not saved: computed again from the config when a model is built (in
        # float64, then rounded: an angle of 200 radians in float32 would be off by 1e-5).
        self.register_buffer("cos", angle.cos().float(), persistent=False)
        self.register_buffer("sin", angle.sin().float(), persistent=False)

    def forward(self, x, past: int = 0):
        """x (B, T, heads, hs) at positions past .. past + T - 1, each pair turned by its angle."""
        cos, sin = (t[past:past + x.shape[1], None, :] for t in (self.cos, self.sin))  # (T, 1, hs/2)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which each position sees only itself and earlier positions."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.proj.is_residual_proj = True  # scaled down at init, see GPT._init_weights
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        head_size = config.n_embd // config.n_head
        self.rotary = Rotary(head_size, config.block_size) if config.position == "rotary" else None
        self.qk_norm = config.qk_norm
        self.explicit = False  # True: the masked-softmax path written out (for teaching and lenses)
        self.last_attention = None  # (B, n_head, T, past + T) weights, kept by the explicit path

    def forward(self, x, cache: LayerCache | None = None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, T, n_head, head_size): each head attends in its own subspace
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head) for t in (q, k, v))
        if self.qk_norm:  # unit-RMS queries and keys: the attention logits stay bounded
            q, k = F.rms_norm(q, (q.shape[-1],)), F.rms_norm(k, (k.shape[-1],))
        past = cache.length if cache is not None else 0  # positions before this call's tokens
        if self.rotary is not None:  # positions enter here, as angles, before keys are cached
            q, k = self.rotary(q, past), self.rotary(k, past)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, n_head, T, head_size)
        if cache is not None:
            k, v = cache.extend(k, v)  # (B, nh, past + T, hs)
        if self.explicit:
            y = self._explicit_attention(q, k, v, past)
        else:
            # The fused kernel. With a cache and one new query, every cached key is in the past,
            # so no mask is needed; with several new queries after a past, pass the mask.
            mask = None if (past == 0 or T == 1) else self._causal_mask(T, past, x.device)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=(past == 0 and T > 1),
                dropout_p=self.dropout if self.training else 0.0,
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.proj(y))

    @staticmethod
    def _causal_mask(T: int, past: int, device) -> torch.Tensor:
        """(T, past + T) booleans: query i (at position past + i) may see keys 0 .. past + i."""
        return torch.ones(T, past + T, dtype=torch.bool, device=device).tril(diagonal=past)

    def _explicit_attention(self, q, k, v, past: int):
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])  # (B, nh, T, past + T)
        att = att.masked_fill(~self._causal_mask(q.shape[2], past, q.device), float("-inf"))
        att = F.softmax(att, dim=-1)
        self.last_attention = att.detach()
        att = F.dropout(att, self.dropout, self.training)
        return att @ v  # (B, nh, T, hs)


class FeedForward(nn.Module):
    """The position-wise feed-forward net: widen 4x, GELU (or ReLU squared), project back."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        # relu(x)^2 (the modded-nanoGPT speedruns' choice): zero below 0 like ReLU, smooth at 0
        self.relu_squared = config.activation == "relu2"
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.proj.is_residual_proj = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        h = self.fc(x)  # (B, T, 4C)
        h = torch.relu(h).square() if self.relu_squared else self.gelu(h)
        return self.dropout(self.proj(h))


class Block(nn.Module):
    """One Transformer block: tokens communicate (attention), then each computes alone (feed-forward)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = FeedForward(config)  # named `mlp` as in GPT-2 and nanoGPT (and in checkpoints)

    def forward(self, x, cache: LayerCache | None = None):
        x = x + self.attn(self.ln1(x), cache)
        x = x + self.mlp(self.ln2(x))
        return x


class GPT(nn.Module):
    """A decoder-only Transformer language model."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # token embeddings
        # position embeddings: a learned table, or none where attention rotates q and k (Rotary)
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if config.position == "learned" else None
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.head.weight = self.wte.weight
        self.apply(self._init_weights)

    def _init_weights(self, module):
        # GPT-2 init: N(0, 0.02) everywhere; the projections that write into the residual
        # stream get std / sqrt(2 * n_layer), since n_layer blocks each add two of them to it.
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "is_residual_proj", False):
                std /= math.sqrt(2 * self.config.n_layer)
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; by default without the position table (nanoGPT's convention: a lookup
        that scales with block_size; the token table stays, as it is also the head when tied)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding and self.wpe is not None else n

    def set_explicit_attention(self, on: bool = True):
        """Switch every head to the written-out masked softmax (slower; keeps attention maps)."""
        for block in self.blocks:
            block.attn.explicit = on

    def forward(self, idx=None, targets=None, *, tok_emb=None, pos_emb=None, cache=None):
        """Logits (B, T, vocab) for each position, and the mean cross-entropy when targets given.

        `tok_emb` (B, T, C) replaces the token embeddings of `idx` and `pos_emb` (T, C) the
        position embeddings (the attribution lens interpolates them); `cache` makes the call
        continue from the positions it already holds.
        """
        tok_emb = self.wte(idx) if tok_emb is None else tok_emb  # (B, T, C)
        T = tok_emb.shape[1]
        past = cache.length if cache is not None else 0
        if past + T > self.config.block_size:
            raise ValueError(f"sequence of {past + T} exceeds block_size {self.config.block_size}")
        if pos_emb is None and self.wpe is not None:
            pos_emb = self.wpe(torch.arange(past, past + T, device=tok_emb.device))  # (T, C)
        # With rotary positions there is no table: positions enter inside attention instead.
        x = self.drop(tok_emb if pos_emb is None else tok_emb + pos_emb)
        slots = cache.layers if cache is not None else [None] * len(self.blocks)  # one per block
        for block, slot in zip(self.blocks, slots, strict=True):
            x = block(x, slot)
        logits = self.head(self.ln_f(x))  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))
        return logits, loss

    def new_cache(self) -> KVCache:
        """An empty key/value cache for incremental generation."""
        return KVCache(self.config.n_layer)


# ----------------------------------------------------------------------------- the KV cache


class KVCache:
    """The keys and values of the tokens seen so far, one slot per layer, kept between calls.

    With a cache, generating the next token runs the model on that one token only: its query
    attends to the stored keys and values instead of recomputing them for the whole context.
    """

    def __init__(self, n_layer: int):
        self.layers = [LayerCache() for _ in range(n_layer)]

    @property
    def length(self) -> int:
        """How many positions are cached."""
        return self.layers[0].length


class LayerCache:
    """One layer's slot: its keys and values so far, each (B, n_head, T, head_size)."""

    def __init__(self):
        self.keys = self.values = None

    @property
    def length(self) -> int:
        """How many positions this layer holds."""
        return 0 if self.keys is None else self.keys.shape[2]

    def extend(self, k: torch.Tensor, v: torch.Tensor):
        """Append this call's keys and values; return all of them so far."""
        if self.keys is not None:
            k, v = torch.cat([self.keys, k], dim=2), torch.cat([self.values, v], dim=2)
        self.keys, self.values = k, v
        return k, v
