"""The AniPortrait engine: the published model's networks, its offline sampler, the live streaming engine.

    networks/     the networks and their weights: ReferenceNet, UNet3D, PoseGuider, reference attention,
                  wav2vec2 + Audio2Mesh / Audio2Pose; loading the published files strictly; conversion
    pipeline/     the offline Lmk2Video sampler (exact mode reproduces the official outputs)
    streaming/    the live path, top to bottom: engine.py (one session) → audio.py (streaming Audio2Mesh /
                  Audio2Pose) → lmk2video.py (shared per device) → sampler.py (causal windows) →
                  avatar_state.py (per-portrait K/V) → worker.py (one device thread, batched windows)
    conformance/  checks against conformance fixtures, and measurements of the streaming engine (cost, seams)

What the code relies on from the published model is written down in docs/aniportrait.md.
"""
