"""FLOP / memory-traffic model of the streaming Lmk2Video engine on a GPU (a projection, not a measurement).

Network costs at 512x512 fp16 are docs/aniportrait.md §9's: denoising UNet3D with reference attention 20.0
TFLOP per 16-frame window and step without CFG, PoseGuider 1.9 TFLOP per 16 frames, ReferenceNet 1.6 once, KL
VAE decode 2.5 per frame. The rest are stated assumptions (marked ASSUMED): device peak, achieved efficiency,
tiny-decoder cost, parameter counts and activation traffic.
"""

from __future__ import annotations

from typing import Any

UNET_TFLOP_PER_16_FRAMES_STEP = 20.0  # docs/aniportrait.md §9, cond branch only
POSE_GUIDER_TFLOP_PER_16_FRAMES = 1.9  # docs/aniportrait.md §9
REFERENCE_NET_TFLOP = 1.6  # docs/aniportrait.md §9, once per avatar
VAE_DECODE_TFLOP_PER_FRAME = 2.5  # docs/aniportrait.md §9
TINY_DECODE_TFLOP_PER_FRAME = 0.15  # ASSUMED: AutoencoderTiny (TAESD) decoder at 512x512
AVATAR_ENCODE_TFLOP = 0.6  # ASSUMED: CLIP ViT-L/14 at 224 (~0.16) + VAE encode at 512 (~0.45)

H100_PEAK_TFLOPS = 989.0  # H100 SXM dense fp16/bf16 tensor-core peak
ACHIEVED_FRACTION = 0.40  # ASSUMED: convolution/attention-heavy UNet at batch 16 frames with SDPA
H100_HBM_TBPS = 3.35
# ASSUMED parameter counts (SD-1.5 UNet 860 M + AnimateDiff-v2 motion modules 453 M; others from the releases)
PARAMS_M = {
    "denoising_unet": 1313,
    "reference_unet": 860,
    "pose_guider": 167.5,
    "vae": 84,
    "image_encoder": 304,
}
# ASSUMED: feature-map reads+writes of one UNet pass per frame at 64x64 latents
ACTIVATION_GB_PER_FRAME_CALL = 0.5
# 16 layers' K and V of the bank (4096x320 x5, 1024x640 x5, 256x1280 x5, 64x1280), fp16
REF_KV_MB_PER_AVATAR = 46
WINDOW = 16


def window_tflop(steps: int, hop: int, *, pose_context: int = 16, tiny_decoder: bool = False) -> float:
    """TFLOP of one steady-state causal window (window - hop history frames + hop new ones)."""
    unet = steps * UNET_TFLOP_PER_16_FRAMES_STEP * WINDOW / 16
    pose = POSE_GUIDER_TFLOP_PER_16_FRAMES * pose_context / 16
    decode = hop * (TINY_DECODE_TFLOP_PER_FRAME if tiny_decoder else VAE_DECODE_TFLOP_PER_FRAME)
    return unet + pose + decode


def window_seconds(
    steps: int, hop: int, *, sessions: int = 1, tiny_decoder: bool = False
) -> dict[str, float]:
    """Projected H100 time of one batched window for `sessions` streams: compute- vs memory-bound."""
    flops = sessions * window_tflop(steps, hop, tiny_decoder=tiny_decoder)
    compute_s = flops / (H100_PEAK_TFLOPS * ACHIEVED_FRACTION)
    weight_gb = 2 * PARAMS_M["denoising_unet"] / 1000  # fp16 weights read once per UNet call
    traffic_gb = steps * (weight_gb + sessions * WINDOW * ACTIVATION_GB_PER_FRAME_CALL)
    memory_s = traffic_gb / (H100_HBM_TBPS * 1000)
    return {
        "tflop": round(flops, 1),
        "compute_s": compute_s,
        "memory_s": memory_s,
        "s": max(compute_s, memory_s),
    }


def gpu_projection(steps: int = 4, hop: int = 12) -> dict[str, Any]:
    """Projected H100 figures at 512x512, no guidance: fps for 1 and 4 sessions, first frame, memory."""
    out: dict[str, Any] = {
        "basis": "docs/aniportrait.md §9 FLOPs; H100 989 TFLOP/s x 0.40 assumed, 3.35 TB/s",
        "measured": False,
    }
    for decoder, tiny in (("kl_vae", False), ("tiny_vae", True)):
        one = window_seconds(steps, hop, tiny_decoder=tiny)
        four = window_seconds(steps, hop, sessions=4, tiny_decoder=tiny)
        out[decoder] = {
            "tflop_per_frame": round(window_tflop(steps, hop, tiny_decoder=tiny) / hop, 2),
            "fps_1_session": round(hop / one["s"], 1),
            "fps_per_session_4_sessions": round(hop / four["s"], 1),
            "bound": "compute" if one["compute_s"] >= one["memory_s"] else "memory",
        }
    first_window = (
        steps * UNET_TFLOP_PER_16_FRAMES_STEP * hop / 16 + POSE_GUIDER_TFLOP_PER_16_FRAMES * hop / 16
    )
    first_window += hop * VAE_DECODE_TFLOP_PER_FRAME + REFERENCE_NET_TFLOP + AVATAR_ENCODE_TFLOP
    out["first_window_compute_s_new_avatar"] = round(first_window / (H100_PEAK_TFLOPS * ACHIEVED_FRACTION), 3)
    weights_gb = 2 * sum(PARAMS_M.values()) / 1000
    out["gpu_memory_gb"] = {
        "weights_fp16": round(weights_gb, 1),
        "per_avatar_ref_kv": REF_KV_MB_PER_AVATAR / 1000,
        "activations_per_window_assumed": 3.0,
        "total_1_session": round(weights_gb + 3.0 + REF_KV_MB_PER_AVATAR / 1000, 1),
        "total_4_sessions": round(weights_gb + 4 * 3.0 + 4 * REF_KV_MB_PER_AVATAR / 1000, 1),
    }
    return out


def latency_model(
    window_s_cpu: dict[int, float], *, lookahead_s: float, fps: float = 30.0, steps: int = 4
) -> list[dict[str, Any]]:
    """Per hop: audio look-ahead + window fill (hop frames of audio) + window compute (CPU measured, GPU model).

    The first frame of a window waits for the audio of the whole window (hop / fps), then for the compute;
    a setting is real time when a window computes faster than its hop plays (compute < hop / fps).
    """
    rows = []
    for hop in sorted(window_s_cpu):
        fill = hop / fps
        gpu = window_seconds(steps, hop)["s"]
        rows.append({
            "hop": hop, "lookahead_s": lookahead_s, "fill_s": round(fill, 4),
            "compute_cpu_s": round(window_s_cpu[hop], 4), "total_cpu_s": round(lookahead_s + fill + window_s_cpu[hop], 4),
            "cpu_realtime": window_s_cpu[hop] < fill,
            "compute_gpu_s": round(gpu, 4), "total_gpu_s": round(lookahead_s + fill + gpu, 4), "gpu_realtime": gpu < fill,
        })  # fmt: skip
    return rows
