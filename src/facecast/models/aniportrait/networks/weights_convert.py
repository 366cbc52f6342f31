"""`facecast weights convert`: the published tree → one safetensors folder (memory-mapped, faster to load).

Output layout (the engine accepts it wherever it accepts the published folder):
  facecast_arch.json             architecture settings (SD-1.5 UNet config + the hard-coded constants)
  reference_unet.safetensors     ReferenceNet, diffusers key names
  denoising_unet.safetensors     UNet3D incl. motion modules, diffusers UNetMotionModel key names
  pose_guider.safetensors        PoseGuider
  vae/, image_encoder/           diffusers / transformers save_pretrained folders (safetensors)
  audio2mesh.safetensors, audio2pose.safetensors, wav2vec2-base-960h/*.json   audio models, keys unchanged
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from facecast.models.aniportrait.networks.arch import ARCH_FILE
from facecast.models.aniportrait.networks.checkpoint import WeightsError, read_state_dict
from facecast.models.aniportrait.networks.weights import load_lmk2video, resolve_weights

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
AUDIO_FILES = ("audio2mesh.pt", "audio2pose.pt")
WAV2VEC_CONFIGS = ("config.json", "preprocessor_config.json")


def _save(state: dict[str, torch.Tensor], path: Path, dtype: torch.dtype) -> None:
    tensors = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().contiguous().cpu() for k, v in state.items()
    }
    save_file(tensors, str(path))


def convert_weights(src: Path, out: Path, dtype: str = "fp32") -> list[Path]:
    """Convert a published (or fixture) weights folder; returns the files written. WeightsError if unusable."""
    if dtype not in DTYPES:
        raise WeightsError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
    layout, folder, arch = resolve_weights(Path(src))
    if layout == "converted":
        raise WeightsError(f"{src} is already a converted folder")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise WeightsError(f"output folder {out} exists and is not empty")
    torch_dtype = DTYPES[dtype]
    components = load_lmk2video(folder, device="cpu", dtype=torch.float32)  # strict checks happen here
    tmp = out.with_name(out.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        _save(components.reference_unet.state_dict(), tmp / "reference_unet.safetensors", torch_dtype)
        _save(components.denoising_unet.state_dict(), tmp / "denoising_unet.safetensors", torch_dtype)
        _save(components.pose_guider.state_dict(), tmp / "pose_guider.safetensors", torch_dtype)
        components.vae.to(torch_dtype).save_pretrained(str(tmp / "vae"), safe_serialization=True)
        components.image_encoder.to(torch_dtype).save_pretrained(
            str(tmp / "image_encoder"), safe_serialization=True
        )
        for name in AUDIO_FILES:  # the audio models' own loaders read these (keys unchanged)
            if (folder / name).is_file():
                _save(read_state_dict(folder / name), tmp / name.replace(".pt", ".safetensors"), torch_dtype)
        wav2vec = folder / "wav2vec2-base-960h"
        for name in WAV2VEC_CONFIGS:
            if (wav2vec / name).is_file():
                (tmp / wav2vec.name).mkdir(exist_ok=True)
                shutil.copy2(wav2vec / name, tmp / wav2vec.name / name)
        (tmp / ARCH_FILE).write_text(json.dumps(arch.to_json(), indent=1))
        if out.exists():
            out.rmdir()
        tmp.rename(out)  # nothing half-written under the requested name
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(p for p in out.rglob("*") if p.is_file())
