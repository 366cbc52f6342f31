"""facecast: a portrait that talks back, live."""

__version__ = "0.1.0"
