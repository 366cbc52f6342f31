"""Conformance checks against fixture folders (`facecast aniportrait check`) and measurements of the
streaming engine (GPU cost projection, seams between causal windows)."""
