"""Where a session's frames go: every sink implements facecast.outputs.base.Output.

webrtc.py (a viewer's aiortc tracks), video_encoder.py (one shared encode per codec for all outputs),
recorder.py (MP4 of what was streamed), mp4_writer.py (the H.264/AAC muxer and the MP4 output),
offline_render.py (an engine driven through a file into an MP4), queues.py (bounded queues, QueueOutput).
Outputs import no engine, no part of the real-time core and no server code.
"""
