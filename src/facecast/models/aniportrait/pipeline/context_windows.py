"""Offline context windows of the Lmk2Video sampler (docs/aniportrait.md §5): 16 frames every 12, closed
loop."""

from __future__ import annotations


def context_windows(
    num_frames: int, size: int = 16, overlap: int = 4, closed_loop: bool = True
) -> list[list[int]]:
    """Frame indices of each window; indices wrap modulo num_frames.

    A clip no longer than one window is a single window. Closed loop (upstream default) keeps starting
    windows until the clip end, so the last one wraps to the start: F=30 → 0..15, 12..27, (24..29, 0..9).
    """
    if num_frames <= 0:
        raise ValueError("a clip needs at least one frame")
    if size <= overlap:
        raise ValueError(f"context window of {size} frames cannot overlap by {overlap}")
    if num_frames <= size:
        return [list(range(num_frames))]
    end = num_frames if closed_loop else num_frames - overlap
    return [[i % num_frames for i in range(start, start + size)] for start in range(0, end, size - overlap)]
