"""The real-time core of a live session, free of models, torch and the server.

clock.py (frame pacing), speech_queue.py (what to say next), interruption.py (the one owner of "stop
now"), engine_runner.py (the worker thread driving an engine through facecast.engine's contract),
session.py (queue + runner + fan-out to outputs), events.py (typed session events), audio_input.py
(PCM and WebRTC audio to 16 kHz mono).
"""
