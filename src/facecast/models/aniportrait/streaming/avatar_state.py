"""Per-avatar state of the streaming Lmk2Video engine: computed once per portrait, shared by its sessions.

Everything that depends only on the reference image (docs/aniportrait.md §9, training-free levers): the CLIP
embedding, the VAE reference latents, the ReferenceNet bank and, from it, the reference keys/values of every
reference-attention layer (the bank projected by the denoising UNet's attn1 to_k / to_v). The bank is
constant, so the projections are too: the denoiser never touches the bank again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from facecast.models.aniportrait.networks.reference_attention import spatial_transformer_blocks
from facecast.models.aniportrait.pipeline.lmk2video import Lmk2VideoPipeline


@dataclass(frozen=True)
class AvatarState:
    """clip_embeds (1, D); ref_latents (1, 4, h, w); ref_kv: block name → (keys, values), each (1, h_i*w_i, C_i)."""

    key: str
    clip_embeds: torch.Tensor
    ref_latents: torch.Tensor
    ref_kv: dict[str, tuple[torch.Tensor, torch.Tensor]]

    def nbytes(self) -> int:
        tensors = [self.clip_embeds, self.ref_latents, *(t for kv in self.ref_kv.values() for t in kv)]
        return sum(t.numel() * t.element_size() for t in tensors)


@torch.no_grad()
def compute_avatar_state(
    pipe: Lmk2VideoPipeline, ref_image: np.ndarray, *, key: str, height: int, width: int
) -> AvatarState:
    """ref_image (H, W, 3) uint8 RGB → AvatarState at the engine's (height, width)."""
    image = Image.fromarray(ref_image)
    # 1. CLIP embedding and VAE latents (the reference is resized to the output size, as offline)
    clip_embeds = pipe.encode_clip(image)
    ref_latents = pipe.encode_reference_latents(image, height, width)
    # 2. ReferenceNet once at t=0, cond row only, no fp16 rounding (the streaming mode is not bit-exact)
    bank = pipe.build_reference_bank(ref_latents, clip_embeds, exact=False, cfg=False)
    # 3. Project the bank through each reference-attention layer's to_k / to_v
    blocks = spatial_transformer_blocks(pipe.denoising_unet)
    ref_kv = {
        name: (blocks[name].attn1.to_k(tokens), blocks[name].attn1.to_v(tokens))
        for name, tokens in bank.items()
    }
    return AvatarState(key=key, clip_embeds=clip_embeds, ref_latents=ref_latents, ref_kv=ref_kv)


class AvatarCache:
    """avatar key → AvatarState, least recently used evicted beyond `capacity`; thread-safe.

    The key must identify the portrait (the avatar store's content hash): a key seen before is a hit and the
    image is not looked at again.
    """

    def __init__(self, capacity: int = 16) -> None:
        if capacity < 1:
            raise ValueError("the avatar cache needs room for at least one avatar")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._states: OrderedDict[str, AvatarState] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: str, compute: Callable[[], AvatarState]) -> AvatarState:
        """The cached state for `key`, else compute() (called outside the lock) and keep it."""
        with self._lock:
            state = self._states.get(key)
            if state is not None:
                self._states.move_to_end(key)
                self.hits += 1
                return state
            self.misses += 1
        state = compute()
        with self._lock:
            self._states[key] = state
            self._states.move_to_end(key)
            while len(self._states) > self.capacity:
                self._states.popitem(last=False)
        return state

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._states

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)
