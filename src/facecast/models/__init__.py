"""Everything that computes: face geometry, audio analysis, motion, renderers, AniPortrait networks.

Never imports aiortc/aiohttp (the server side depends on this package, not the reverse).
"""
