"""Reading published checkpoints and loading them strictly, with errors that name the problem."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn


class WeightsError(ValueError):
    """A weights file or folder is missing, unreadable or does not fit the network (one clear sentence)."""


def read_state_dict(path: Path, *, mmap: bool = True) -> dict[str, torch.Tensor]:
    """Load a .pth/.pt (torch zip) or .safetensors file as a flat name → tensor dict on the CPU.

    Uses memory mapping where the format allows so a 3.4 GB file is not copied twice.
    """
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path), device="cpu"))
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # corrupt zip, pickle with code, truncated file...
        raise WeightsError(f"cannot read weights file {path}: {exc}") from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} is not a plain state dict of tensors")
    return dict(state)


def load_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    rename: Callable[[str], str | None] | None = None,
    ignore_missing: Callable[[str], bool] | None = None,
) -> None:
    """Copy `state` into `module` requiring the exact key set and shapes.

    rename maps a checkpoint key to the module's key (None drops it, e.g. recomputed buffers);
    ignore_missing tells which module keys may legitimately be absent (loaded from another file).
    Raises WeightsError naming the first missing/unexpected key or wrong shape.
    """
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new_key = rename(key) if rename else key
        if new_key is not None:
            renamed[new_key] = value
    expected = module.state_dict()
    missing = [k for k in expected if k not in renamed and not (ignore_missing and ignore_missing(k))]
    unexpected = [k for k in renamed if k not in expected]
    if missing:
        raise WeightsError(
            f"{source} lacks {len(missing)} expected key(s), first '{missing[0]}' (is it the right checkpoint?)"
        )
    if unexpected:
        raise WeightsError(
            f"{source} has {len(unexpected)} unexpected key(s), first '{unexpected[0]}' "
            "(is it a checkpoint of another model?)"
        )
    for key, value in renamed.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise WeightsError(
                f"{source}: '{key}' has shape {tuple(value.shape)}, the network expects {tuple(expected[key].shape)}"
            )
    module.load_state_dict(renamed, strict=False, assign=False)
