"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from aiohttp import web

from facecast.server.metrics import Metrics
from facecast.server.registry import Registry

REGISTRY = web.AppKey("registry", Registry)
METRICS = web.AppKey("metrics", Metrics)
