"""Typed settings, loaded from configs/*.yaml and overridable from the command line.

Precedence: built-in defaults < YAML file (--config) < environment (FACECAST_*) < CLI flags.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Square frame and avatar sizes in pixels, the same range for every --size: avatar preparation keeps crops of
# 128..1024 px (facecast.models.avatar), and H.264's yuv420p needs an even size.
MIN_SIZE, MAX_SIZE = 128, 1024


def default_home() -> Path:
    """Where facecast keeps its data (avatar store, recordings): $FACECAST_HOME or ~/.local/share/facecast."""
    env = os.environ.get("FACECAST_HOME")
    return Path(env) if env else Path.home() / ".local" / "share" / "facecast"


@dataclass
class RenderSettings:
    engine: str = "warp"  # "warp" (CPU, no weights) or "aniportrait" (GPU, published weights)
    fps: int = 30
    size: int = 512  # output frames are size x size
    seed: int = 0
    head_motion: bool = True
    pose_template: str | None = None  # AniPortrait (N, 6) .npy pose template, else procedural motion
    background: str = (
        "keep"  # warp engine: keep, color:#RRGGBB, image:PATH, blur (models/render/background.py)
    )
    weights: str | None = None  # AniPortrait pretrained_model folder (or converted safetensors folder)
    # AniPortrait streaming engine (engine: aniportrait)
    steps: int = 4  # DDIM steps per window (trailing schedule)
    hop: int = 12  # new frames per 16-frame window (overlap = 16 - hop)
    guidance: float = 1.0  # classifier-free guidance scale; 1.0 = cond branch only
    audio_lookahead_s: float = 0.2  # future audio Audio2Mesh sees for each frame
    left_context_s: float = 2.0  # past audio Audio2Mesh sees for each frame
    pose_style: int | None = None  # Audio2Pose style 0..99: head pose from speech; None: template/procedural
    device: str | None = None  # torch device ("cuda", "cuda:1", "cpu"); None = cuda when available
    dtype: str | None = None  # "fp16" | "bf16" | "fp32"; None = fp16 on cuda, fp32 on cpu
    tiny_vae: str | None = None  # AutoencoderTiny (TAESD) folder: decode with it instead of the KL VAE
    compile: str | None = (
        None  # torch.compile mode of the UNet: "default", "reduce-overhead" (CUDA graphs), ...
    )


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    api_token: str | None = None  # or FACECAST_API_TOKEN
    cors_origins: list[str] = field(default_factory=list)
    ice_servers: list[dict[str, Any]] = field(default_factory=list)  # [{"urls": "stun:..."}], none by default
    ice_host_addresses: list[str] = field(default_factory=list)  # addresses offered as host candidates
    max_upload_bytes: int = 20 * 1024 * 1024
    max_sessions: int | None = None  # None: from the machine's cores (facecast.server.admission)
    # Refuse new sessions (429) while the running ones are late; off only where slower than real time is
    # expected (configs/aniportrait_tiny.yaml: tiny diffusion on a CPU).
    refuse_when_late: bool = True
    # Each WebRTC peer holds sockets, a DTLS transport and encoder queues: one session cannot take them all.
    max_peers_per_session: int = 32
    # An answered offer whose peer has not connected by then is closed (clients that vanish mid-signalling).
    offer_timeout_s: float = 10.0
    # A cluster's front door (serve --cluster), when an engine worker dies: "fail" its sessions (an error
    # event, state failed), or "recreate" each, idle, on another worker under the same id and tokens.
    on_worker_loss: str = "fail"
    # Janus (janus.plugin.streaming) for broadcasts to any number of viewers (server/api_broadcast.py): its
    # HTTP API base (http://127.0.0.1:8088/janus), the address its mountpoints receive RTP on, its api_secret.
    janus_url: str | None = None
    janus_rtp_host: str = "127.0.0.1"
    janus_api_secret: str | None = None


@dataclass
class Settings:
    home: Path = field(default_factory=default_home)
    render: RenderSettings = field(default_factory=RenderSettings)
    server: ServerSettings = field(default_factory=ServerSettings)

    @property
    def avatar_dir(self) -> Path:
        return self.home / "avatars"


class ConfigError(ValueError):
    """A configuration file or value is invalid (one clear sentence)."""


def _merge(obj: Any, data: dict[str, Any], where: str) -> None:
    known = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"unknown setting '{where}{key}' (known: {', '.join(sorted(known))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current) and not isinstance(current, type):
            if not isinstance(value, dict):
                raise ConfigError(f"setting '{where}{key}' must be a mapping")
            _merge(current, value, f"{where}{key}.")
        elif isinstance(current, Path):
            setattr(obj, key, Path(os.path.expanduser(str(value))))
        else:
            setattr(obj, key, value)


def check_api_token(token: object) -> str | None:
    """The API token if it is usable, None if unset; anything else is refused with one sentence.

    An empty token would pass for "a token is set" (so the server would listen publicly) while matching
    an empty bearer; a non-string one (a YAML integer) can never be compared with what clients send."""
    if token is None:
        return None
    if not isinstance(token, str):
        raise ConfigError(
            f"server.api_token must be a string (quote it in YAML), not {type(token).__name__} {token!r}"
        )
    if not token.strip():
        raise ConfigError(
            "server.api_token is empty: set a non-empty token, or remove it to serve on loopback only"
        )
    return token


def _check_server(server: ServerSettings) -> None:
    """The WebRTC limits: YAML can put any type in them, and a wrong one would fail only at the first offer."""
    peers, timeout = server.max_peers_per_session, server.offer_timeout_s
    if isinstance(peers, bool) or not isinstance(peers, int) or peers < 1:
        raise ConfigError("server.max_peers_per_session must be a whole number of at least 1")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ConfigError("server.offer_timeout_s must be a number of seconds above 0")
    if server.on_worker_loss not in ("fail", "recreate"):
        raise ConfigError("server.on_worker_loss must be fail or recreate")


def load_settings(path: Path | None = None) -> Settings:
    """Defaults, then the YAML file if given, then FACECAST_API_TOKEN from the environment
    (an empty FACECAST_API_TOKEN counts as unset)."""
    settings = Settings()
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must contain a mapping of settings")
        _merge(settings, data, "")
    # A bad token in the file is refused even where the environment overrides it.
    check_api_token(settings.server.api_token)
    token = os.environ.get("FACECAST_API_TOKEN")
    if token:
        settings.server.api_token = check_api_token(token)
    _check_server(settings.server)
    return settings
