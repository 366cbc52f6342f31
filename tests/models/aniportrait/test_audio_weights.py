"""Audio checkpoints: full-size key names/shapes against the manifests, and bad weights → WeightsError."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from facecast.models.aniportrait.networks.audio2mesh import Audio2Mesh
from facecast.models.aniportrait.networks.audio2pose import Audio2Pose
from facecast.models.aniportrait.networks.checkpoint import WeightsError
from facecast.models.aniportrait.networks.wav2vec import legacy_weight_norm_rename, wav2vec2_config


def _shapes(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


@pytest.fixture(scope="module")
def full_size() -> dict[str, torch.nn.Module]:
    """Published sizes (wav2vec2-base-960h, latent 512) built without memory on the meta device."""
    config = wav2vec2_config(None)
    with torch.device("meta"):
        return {"audio2mesh": Audio2Mesh(config), "audio2pose": Audio2Pose(config)}


@pytest.mark.parametrize("name", ["audio2mesh", "audio2pose"])
def test_full_size_keys_match_published_manifest(shared_dir: Path, full_size: dict, name: str) -> None:
    manifest = json.loads((shared_dir / "aniportrait" / "manifests" / f"{name}.json").read_text())
    model_shapes = _shapes(full_size[name])
    assert any(k.endswith("weight_g") for k in manifest)  # published files use legacy weight-norm names
    rename = legacy_weight_norm_rename(set(model_shapes))
    assert {rename(k): v for k, v in manifest.items()} == model_shapes


def test_full_size_audio2mesh_matches_runtime_manifest(shared_dir: Path, full_size: dict) -> None:
    manifest = json.loads(
        (shared_dir / "aniportrait" / "manifests" / "audio2mesh.runtime_torch_ge_2.1.json").read_text()
    )
    assert _shapes(full_size["audio2mesh"]) == manifest
    assert full_size["audio2mesh"].in_fn.weight.shape == (512, 768)


@pytest.fixture()
def weights_dir(fixture_a: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "pretrained_model"
    shutil.copytree(fixture_a / "pretrained_model" / "wav2vec2-base-960h", folder / "wav2vec2-base-960h")
    return folder


def _load(folder: Path, fixture_a: Path, cls: type[Audio2Mesh] | type[Audio2Pose]) -> None:
    cls.from_folder(folder, inference_config=fixture_a / "configs" / "inference_audio.json")


def _edit(fixture_a: Path, name: str, folder: Path, edit: object) -> None:
    state = torch.load(fixture_a / "pretrained_model" / name, weights_only=True)
    assert callable(edit)
    edit(state)
    torch.save(state, folder / name)


def test_missing_key_is_named(fixture_a: Path, weights_dir: Path) -> None:
    _edit(fixture_a, "audio2mesh.pt", weights_dir, lambda s: s.pop("in_fn.bias"))
    with pytest.raises(WeightsError, match=r"audio2mesh\.pt lacks 1 expected key.*in_fn\.bias"):
        _load(weights_dir, fixture_a, Audio2Mesh)


def test_missing_weight_norm_key_is_an_error(fixture_a: Path, weights_dir: Path) -> None:
    # Upstream's strict=False silently dropped these (its issue 65); here they are required.
    _edit(
        fixture_a,
        "audio2pose.pt",
        weights_dir,
        lambda s: s.pop("audio_encoder.encoder.pos_conv_embed.conv.weight_g"),
    )
    with pytest.raises(WeightsError, match=r"pos_conv_embed\.conv\.parametrizations\.weight\.original0"):
        _load(weights_dir, fixture_a, Audio2Pose)


def test_wrong_shape_is_named(fixture_a: Path, weights_dir: Path) -> None:
    def widen(state: dict[str, torch.Tensor]) -> None:
        state["out_fn.weight"] = torch.zeros(1404, 17)

    _edit(fixture_a, "audio2mesh.pt", weights_dir, widen)
    with pytest.raises(WeightsError, match=r"'out_fn\.weight' has shape \(1404, 17\).*\(1404, 16\)"):
        _load(weights_dir, fixture_a, Audio2Mesh)


def test_unexpected_key_is_named(fixture_a: Path, weights_dir: Path) -> None:
    _edit(fixture_a, "audio2mesh.pt", weights_dir, lambda s: s.update(extra=torch.zeros(1)))
    with pytest.raises(WeightsError, match="unexpected key.*'extra'"):
        _load(weights_dir, fixture_a, Audio2Mesh)


def test_checkpoint_of_the_other_model(fixture_a: Path, weights_dir: Path) -> None:
    shutil.copy(fixture_a / "pretrained_model" / "audio2pose.pt", weights_dir / "audio2mesh.pt")
    shutil.copy(fixture_a / "pretrained_model" / "audio2mesh.pt", weights_dir / "audio2pose.pt")
    with pytest.raises(WeightsError, match="not an Audio2Mesh checkpoint"):
        _load(weights_dir, fixture_a, Audio2Mesh)
    with pytest.raises(WeightsError, match="not an Audio2Pose checkpoint"):
        _load(weights_dir, fixture_a, Audio2Pose)


def test_missing_files_are_named(fixture_a: Path, weights_dir: Path) -> None:
    with pytest.raises(WeightsError, match=r"audio2mesh\.pt does not exist"):
        _load(weights_dir, fixture_a, Audio2Mesh)
    shutil.rmtree(weights_dir / "wav2vec2-base-960h")
    with pytest.raises(WeightsError, match=r"wav2vec2-base-960h/config\.json does not exist"):
        _load(weights_dir, fixture_a, Audio2Pose)
    with pytest.raises(WeightsError, match=r"nowhere\.yaml does not exist"):
        Audio2Mesh.from_folder(weights_dir, inference_config=weights_dir / "nowhere.yaml")
