"""The embedded TTS: espeak-ng text → float32 16 kHz speech."""

from __future__ import annotations

import asyncio
import re
import shutil

import numpy as np

MAX_TEXT_CHARS = 5000
VOICE_RE = re.compile(r"^[A-Za-z0-9_+\-]{1,40}$")


class TtsError(ValueError):
    pass


async def speak(text: str, voice: str | None = None) -> np.ndarray:
    from facecast.models.audio.decode import decode_audio

    text = text.strip()
    if not text:
        raise TtsError("the text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise TtsError(f"the text is longer than {MAX_TEXT_CHARS} characters")
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed")
    if voice is not None and (
        not VOICE_RE.match(voice) or voice.split("+")[0].lower() not in await _voices(exe)
    ):
        raise TtsError(f"'{voice}' is not an espeak-ng voice (see `espeak-ng --voices`)")
    args = [exe, "--stdout", "-v", voice or "en-us", "--stdin"]
    proc = await asyncio.create_subprocess_exec(
        *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    wav, err = await proc.communicate(text.encode())
    if proc.returncode != 0 or len(wav) <= 44 or b"does not exist" in err:
        raise TtsError(
            f"espeak-ng could not speak with voice '{voice}': {err.decode(errors='replace').strip()}"
        )
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, decode_audio, wav)


_VOICES: set[str] = set()


async def _voices(exe: str) -> set[str]:
    """Language codes, names and file names of the installed voices (espeak-ng falls back silently)."""
    if not _VOICES:
        proc = await asyncio.create_subprocess_exec(exe, "--voices", stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        for line in out.decode(errors="replace").splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 5:
                _VOICES.update(
                    {cols[1].lower(), cols[3].lower(), cols[4].lower(), cols[4].split("/")[-1].lower()}
                )
    return _VOICES
