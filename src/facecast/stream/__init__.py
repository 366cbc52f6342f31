"""The real-time core: clock, session runtime, engine runner, tracks. No torch here."""
