"""The live AniPortrait path: the session engine (engine.py) down to the device worker (worker.py)."""
