"""AniPortrait's networks and their weights: building each from configuration, loading the published files."""
