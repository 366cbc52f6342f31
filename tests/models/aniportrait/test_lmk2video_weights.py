"""Loading the published layout strictly, clear errors for broken folders, and `facecast weights convert`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from facecast.__main__ import main
from facecast.models.aniportrait.networks.checkpoint import WeightsError
from facecast.models.aniportrait.networks.weights import load_lmk2video, resolve_weights


def test_fixture_layouts_resolve_to_tiny_arch(fixture_a: Path) -> None:
    for path in (fixture_a, fixture_a / "pretrained_model"):
        layout, folder, arch = resolve_weights(path)
        assert (layout, folder) == ("published", fixture_a / "pretrained_model")
        assert arch.motion_norm_num_groups == 4 and arch.pose_guider.transformer_head_dim == 2
        assert arch.motion_num_attention_heads == 2 and arch.pose_guider.noise_latent_channels == 4


def test_load_fixture_weights(fixture_a: Path) -> None:
    c = load_lmk2video(fixture_a)
    motion = torch.load(fixture_a / "pretrained_model" / "motion_module.pth", weights_only=True)
    key = "mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.1.to_out.0.weight"
    torch.testing.assert_close(
        c.denoising_unet.mid_block.motion_modules[0].transformer_blocks[0].attn2.to_out[0].weight, motion[key]
    )
    assert c.pose_guider.training and not c.denoising_unet.training
    assert (
        c.scheduler.config.prediction_type == "v_prediction"
        and c.scheduler.config.timestep_spacing == "trailing"
    )


@pytest.mark.parametrize(
    ("omit", "named"),
    [
        ("pretrained_model/pose_guider.pth", "pose_guider.pth"),
        ("pretrained_model/stable-diffusion-v1-5/unet/config.json", "config.json"),
        ("pretrained_model/sd-vae-ft-mse/diffusion_pytorch_model.safetensors", "VAE"),
        ("pretrained_model/image_encoder", "image_encoder"),
    ],
)
def test_partial_folder_names_what_is_missing(
    linked_fixture: Callable[..., Path], omit: str, named: str
) -> None:
    folder = linked_fixture(omit=(omit,))
    with pytest.raises(WeightsError, match=named) as info:
        load_lmk2video(folder)
    assert "\n" not in str(info.value)


def test_checkpoint_of_another_model(linked_fixture: Callable[..., Path]) -> None:
    folder = linked_fixture(omit=("pretrained_model/pose_guider.pth",))
    (folder / "pretrained_model" / "pose_guider.pth").symlink_to(
        folder / "pretrained_model" / "reference_unet.pth"
    )
    with pytest.raises(WeightsError, match=r"pose_guider\.pth .*(lacks|unexpected)"):
        load_lmk2video(folder)


def test_wrong_shape_is_named(linked_fixture: Callable[..., Path], fixture_a: Path) -> None:
    folder = linked_fixture(omit=("pretrained_model/reference_unet.pth",))
    state = torch.load(fixture_a / "pretrained_model" / "reference_unet.pth", weights_only=True)
    state["conv_in.weight"] = state["conv_in.weight"][:2]
    torch.save(state, folder / "pretrained_model" / "reference_unet.pth")
    with pytest.raises(WeightsError, match=r"conv_in\.weight.*shape"):
        load_lmk2video(folder)


def test_not_a_weights_folder(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="reference_unet.pth is missing"):
        load_lmk2video(tmp_path)
    with pytest.raises(WeightsError, match="does not exist"):
        load_lmk2video(tmp_path / "nope")


def test_convert_roundtrip(fixture_a: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "converted"
    assert main(["weights", "convert", "--weights", str(fixture_a / "pretrained_model"), "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (out / "facecast_arch.json").is_file() and (out / "audio2mesh.safetensors").is_file()
    original, converted = load_lmk2video(fixture_a), load_lmk2video(out)
    assert converted.arch == original.arch
    for name in ("reference_unet", "denoising_unet", "pose_guider", "vae", "image_encoder"):
        a, b = getattr(original, name).state_dict(), getattr(converted, name).state_dict()
        assert a.keys() == b.keys(), name
        assert all(torch.equal(a[k], b[k]) for k in a), name
    # converting again into the same folder is refused with one line
    assert main(["weights", "convert", "--weights", str(fixture_a), "-o", str(out)]) != 0
    assert "not empty" in capsys.readouterr().err


def test_convert_fp16(fixture_a: Path, tmp_path: Path) -> None:
    from facecast.models.aniportrait.networks.checkpoint import read_state_dict
    from facecast.models.aniportrait.networks.weights_convert import convert_weights

    convert_weights(fixture_a, tmp_path / "half", "fp16")
    state = read_state_dict(tmp_path / "half" / "pose_guider.safetensors")
    assert (
        state["scale"].dtype == torch.float16
        and state["conv_layers.1.num_batches_tracked"].dtype == torch.int64
    )


def test_convert_bad_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["weights", "convert", "--weights", str(tmp_path), "-o", str(tmp_path / "o")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "reference_unet.pth is missing" in err[0]
    assert not (tmp_path / "o").exists()
