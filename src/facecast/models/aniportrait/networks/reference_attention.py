"""Reference attention: the ReferenceNet's self-attention inputs condition every frame of the denoising UNet.

Writer: forward hooks on `norm1` of each spatial transformer block of the ReferenceNet record its output (the
"bank"). Reader: `ReferenceAttnProcessor` on `attn1` of the same-named block of the denoising UNet uses query
= the frame's tokens, key/value = concat(frame tokens, bank tokens), projected by the denoising UNet's own
to_k/to_v (docs/aniportrait.md §4 "full" fusion). Rows flagged as unconditional (the CFG uncond half) use
plain self-attention.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from torch import nn


def spatial_transformer_blocks(unet: nn.Module) -> dict[str, BasicTransformerBlock]:
    """The SD blocks' spatial transformer blocks by module name (motion modules excluded), in UNet order."""
    return {
        name: module
        for name, module in unet.named_modules()
        if isinstance(module, BasicTransformerBlock) and ".attentions." in name
    }


class ReferenceBankRecorder:
    """Records norm1(hidden_states) of every spatial transformer block of a ReferenceNet while enabled.

    bank[name]: (B, h*w, C) for the ReferenceNet batch (rows follow its input batch).
    """

    def __init__(self, reference_unet: nn.Module) -> None:
        self.bank: dict[str, torch.Tensor] = {}
        self.enabled = False
        self._handles = [
            block.norm1.register_forward_hook(self._hook(name))
            for name, block in spatial_transformer_blocks(reference_unet).items()
        ]

    def _hook(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            if self.enabled:
                self.bank[name] = output

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


class ReferenceState:
    """Per-call inputs of the reference processors, shared by all of them.

    bank: block name → (1, h*w, C) reference tokens (already in the compute dtype).
    reference_rows: (B*F,) bool, True where a row attends to the reference (the conditional half);
    None means no reference at all (plain self-attention everywhere).
    kv: block name → (keys, values), each (B*F, h*w, C): the bank already projected by that block's attn1
    to_k / to_v, one row per frame (the streaming engine's per-avatar cache, several avatars per batch).
    When set it is used instead of `bank`.
    upstream_schedule: do the official code's redundant work (cost baselines only, same outputs): every row
    attends to the reference, then the unconditional rows are recomputed with plain self-attention.
    """

    def __init__(self) -> None:
        self.bank: dict[str, torch.Tensor] = {}
        self.reference_rows: torch.Tensor | None = None
        self.kv: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None
        self.upstream_schedule = False


class ReferenceAttnProcessor:
    """attn1 processor: self-attention whose keys/values also include the reference bank tokens.

    hidden_states: (N, L, C) tokens of N = B*F frames → (N, L, C).
    """

    def __init__(self, name: str, state: ReferenceState) -> None:
        self.name = name
        self.state = state

    @staticmethod
    def _attend(
        attn: Attention,
        query_in: torch.Tensor,
        kv_in: torch.Tensor,
        extra_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """extra_kv: projected (keys, values) (N, L_ref, C) appended after those of kv_in."""
        n = query_in.shape[0]
        query = attn.to_q(query_in)
        key = attn.to_k(kv_in)
        value = attn.to_v(kv_in)
        if extra_kv is not None:
            key = torch.cat([key, extra_kv[0]], dim=1)
            value = torch.cat([value, extra_kv[1]], dim=1)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(n, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(n, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(n, -1, attn.heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(n, -1, attn.heads * head_dim).to(query.dtype)
        return attn.to_out[1](attn.to_out[0](out))

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        rows = self.state.reference_rows
        bank = self.state.bank.get(self.name)
        projected = self.state.kv.get(self.name) if self.state.kv is not None else None
        if projected is not None and rows is not None:
            return self._attend_projected(attn, hidden_states, rows, projected)
        if rows is None or bank is None or not bool(rows.any()):
            return self._attend(attn, hidden_states, hidden_states)
        every_row = bool(rows.all())
        if every_row or self.state.upstream_schedule:
            kv = torch.cat([hidden_states, bank.expand(hidden_states.shape[0], -1, -1)], dim=1)
            out = self._attend(attn, hidden_states, kv)
            if not every_row:  # upstream then overwrites the uncond rows (mutual_self_attention.py)
                plain = hidden_states[~rows]
                out[~rows] = self._attend(attn, plain, plain)
            return out
        out = torch.empty_like(hidden_states)
        ref = hidden_states[rows]
        kv = torch.cat([ref, bank.expand(ref.shape[0], -1, -1)], dim=1)
        out[rows] = self._attend(attn, ref, kv)
        plain = hidden_states[~rows]
        out[~rows] = self._attend(attn, plain, plain)
        return out

    def _attend_projected(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        rows: torch.Tensor,
        projected: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """Reference rows attend to [own keys ; precomputed reference keys] (per row), the others to themselves."""
        if bool(rows.all()):
            return self._attend(attn, hidden_states, hidden_states, projected)
        out = torch.empty_like(hidden_states)
        ref = hidden_states[rows]
        if ref.shape[0]:
            out[rows] = self._attend(attn, ref, ref, (projected[0][rows], projected[1][rows]))
        plain = hidden_states[~rows]
        if plain.shape[0]:
            out[~rows] = self._attend(attn, plain, plain)
        return out


def install_reference_processors(unet: nn.Module, state: ReferenceState) -> list[str]:
    """Set a ReferenceAttnProcessor on attn1 of every spatial transformer block; returns the block names."""
    blocks = spatial_transformer_blocks(unet)
    for name, block in blocks.items():
        block.attn1.set_processor(ReferenceAttnProcessor(name, state))
    return list(blocks)
