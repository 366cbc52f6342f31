"""Conformance of the audio stage against a fixture folder (docs/aniportrait.md §7.4).

Starts from the fixture's 16 kHz waveform (resampling is not part of conformance) and compares every
intermediate the fixture stores: input values, wav2vec2 stages, Audio2Mesh and Audio2Pose outputs,
the pose post-processing and the projected points of the resulting driving meshes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from facecast.models.aniportrait.conformance.landmarks import FixtureArchive, FixtureError, max_abs_error
from facecast.models.aniportrait.conformance.stage_result import StageResult
from facecast.models.aniportrait.networks.audio2mesh import Audio2Mesh
from facecast.models.aniportrait.networks.audio2pose import Audio2Pose, halve_rotation, smooth_poses
from facecast.models.aniportrait.networks.wav2vec import frame_count, normalize_waveform
from facecast.models.face.projection import project_points

AUDIO_FIXTURE = "audio/audio_fixture.npz"
DEFAULT_AUDIO_CONFIG = "configs/inference_audio.json"
WEIGHTS_FOLDER = "pretrained_model"

INPUT_TOL = 1e-6  # elementwise numpy float32: exact in practice
TENSOR_TOL = 1e-5  # fp32 models; the fixture's thread-count noise floor is ~3e-7
PIXEL_TOL = 1e-4  # projected points in px


def audio_config_path(fixture_dir: Path) -> Path:
    """The audio inference config a fixture names in configs/animation_prompt.json, else the default path."""
    prompt = fixture_dir / "configs" / "animation_prompt.json"
    relative = DEFAULT_AUDIO_CONFIG
    if prompt.is_file():
        relative = str(json.loads(prompt.read_text()).get("audio_inference_config", relative))
    path = fixture_dir / relative
    if not path.is_file():
        raise FixtureError(f"fixture file {path} is missing")
    return path


def _result(name: str, actual: np.ndarray | torch.Tensor, expected: np.ndarray, tol: float) -> StageResult:
    value = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else actual
    return StageResult("audio", name, max_abs_error(np.asarray(value), expected), tol)


def check_audio(fixture_dir: Path) -> list[StageResult]:
    """Every audio stage of a fixture folder; raises FixtureError (missing file) or WeightsError (bad weights)."""
    fx = FixtureArchive(fixture_dir, AUDIO_FIXTURE)
    config = audio_config_path(fixture_dir)
    weights = fixture_dir / WEIGHTS_FOLDER
    landmarks = FixtureArchive(fixture_dir, "inputs/landmarks.npz")
    pose_images = FixtureArchive(fixture_dir, "inputs/pose_images.npz")["pose_images"]
    height, width = pose_images.shape[1:3]

    values = normalize_waveform(fx["waveform_16k"])
    seq_len = frame_count(values.size)
    results = [
        _result("input_values", values, fx["input_values"], INPUT_TOL),
        StageResult("audio", "seq_len (frames)", abs(seq_len - int(fx["seq_len"])), 0),
    ]

    a2m = Audio2Mesh.from_folder(weights, inference_config=config)
    a2p = Audio2Pose.from_folder(weights, inference_config=config)
    with torch.no_grad():
        stages, mesh = a2m.forward_stages(torch.from_numpy(values)[None], seq_len)
        in_fn_out = a2m.in_fn(stages.last_hidden_state)
    results += [
        _result("a2m conv features", stages.conv_features, fx["a2m_conv_features"], TENSOR_TOL),
        _result("a2m interpolated features", stages.interpolated, fx["a2m_interp_features"], TENSOR_TOL),
        _result("a2m projected features", stages.projected, fx["a2m_projected_features"], TENSOR_TOL),
        _result("a2m last hidden state", stages.last_hidden_state, fx["a2m_last_hidden_state"], TENSOR_TOL),
        _result("a2m in_fn output", in_fn_out, fx["a2m_in_fn_out"], TENSOR_TOL),
        _result("a2m output", mesh, fx["a2m_output"], TENSOR_TOL),
    ]

    raw = a2p.infer(fx["waveform_16k"], int(fx["a2p_id_seed"]))
    halved = halve_rotation(raw)
    smoothed = smooth_poses(halved)
    results += [
        _result("a2p output raw", raw[None], fx["a2p_output_raw"], TENSOR_TOL),
        _result("a2p rotation halved", halved, fx["a2p_pose_rot_halved"], TENSOR_TOL),
        _result("a2p smoothed", smoothed, fx["a2p_pose_smoothed"], TENSOR_TOL),
    ]

    meshes = mesh[0].numpy().reshape(seq_len, -1, 3) + landmarks["ref_lmks3d_468"]
    points = project_points(meshes, landmarks["ref_trans_mat"], smoothed, width, height)
    results.append(
        StageResult(
            "audio", "projected points (px)", max_abs_error(points, fx["projected_points"]), PIXEL_TOL
        )
    )
    return results
