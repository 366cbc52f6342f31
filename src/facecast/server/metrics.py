"""/metrics in Prometheus text format: sessions, frames, per-stage latency histograms, queue
depths and the A/V send offset per viewer. Gauges are read from live state at scrape time."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from facecast.frames import OutputFrame
from facecast.outputs.base import Output

if TYPE_CHECKING:
    from facecast.server.registry import Registry

BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.25, 0.5, 1.0)
STAGES = ("render", "encode", "emit_lateness", "dispatch")


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS_S) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.n += 1
        self.total += value
        for i, bound in enumerate(BUCKETS_S):
            if value <= bound:
                self.counts[i] += 1
                return
        self.counts[-1] += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, running = [], 0
        for bound, count in zip((*BUCKETS_S, float("inf")), self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{{labels},le="{le}"}} {running}')
        out += [f"{name}_sum{{{labels}}} {self.total:.6f}", f"{name}_count{{{labels}}} {self.n}"]
        return out


class FrameTimings(Output):
    """An output of every session that only measures: per-stage latencies into the server's histograms."""

    kind = "metrics"

    def __init__(self, stages: dict[str, Histogram]) -> None:
        super().__init__()
        self.stages = stages

    def on_frame(self, frame: OutputFrame) -> None:
        if frame.rendered:  # a repeated image took no render time worth a sample
            self.stages["render"].observe(frame.render_s)
        self.stages["encode"].observe(frame.encode_s)
        self.stages["emit_lateness"].observe(max(0.0, (frame.emitted_ns - frame.due_ns) / 1e9))
        self.stages["dispatch"].observe(max(0.0, (time.monotonic_ns() - frame.emitted_ns) / 1e9))


class Metrics:
    def __init__(self) -> None:
        self.stages = {stage: Histogram() for stage in STAGES}
        self.started = time.time()

    def frame_timings(self) -> FrameTimings:
        """An output to add to each session."""
        return FrameTimings(self.stages)

    def render(self, registry: Registry) -> str:
        lines = [
            "# HELP facecast_sessions Live sessions.",
            "# TYPE facecast_sessions gauge",
            f"facecast_sessions {len(registry.sessions)}",
            "# HELP facecast_uptime_seconds Seconds since the server started.",
            "# TYPE facecast_uptime_seconds gauge",
            f"facecast_uptime_seconds {time.time() - self.started:.1f}",
            "# HELP facecast_stage_seconds Per-stage latency: engine render, shared video encoding (all codecs), "
            "lateness against the frame clock, worker-to-loop dispatch.",
            "# TYPE facecast_stage_seconds histogram",
        ]
        for stage, hist in self.stages.items():
            lines += hist.lines("facecast_stage_seconds", f'stage="{stage}"')
        emitted = ["# TYPE facecast_frames_emitted_total counter"]
        skipped = [
            "# HELP facecast_frames_skipped_total Frames emitted repeating the previous image: the worker was "
            "late by more than SKIP_AFTER_FRAMES (2) frames and skipped rendering (audio unaffected).",
            "# TYPE facecast_frames_skipped_total counter",
        ]
        queued = ["# TYPE facecast_queued_speech_seconds gauge"]
        keyframes = [
            "# HELP facecast_keyframes_total Keyframes of each session's shared video encoder (new viewers, "
            "picture loss, interrupts and queue overflows each ask for one).",
            "# TYPE facecast_keyframes_total counter",
        ]
        sent = ["# TYPE facecast_frames_sent_total counter"]
        dropped = ["# TYPE facecast_frames_dropped_total counter"]
        depth = ["# TYPE facecast_queue_depth gauge"]
        offset = [
            "# HELP facecast_av_offset_seconds Video minus audio send time for the same media instant.",
            "# TYPE facecast_av_offset_seconds gauge",
        ]
        events = ["# TYPE facecast_events_total counter"]
        viewers = 0
        for sid, live in registry.sessions.items():
            rt = live.runtime
            emitted.append(f'facecast_frames_emitted_total{{session="{sid}"}} {rt.frames_emitted}')
            skipped.append(f'facecast_frames_skipped_total{{session="{sid}"}} {rt.frames_skipped}')
            for enc in rt.encoders.active():
                keyframes.append(
                    f'facecast_keyframes_total{{session="{sid}",codec="{enc.codec}"}} {enc.keyframes}'
                )
            queued.append(
                f'facecast_queued_speech_seconds{{session="{sid}"}} {rt.queue.queued_seconds():.3f}'
            )
            for kind, count in rt.events.counts.items():
                events.append(f'facecast_events_total{{session="{sid}",type="{kind}"}} {count}')
            for pid, peer in live.peers.items():
                if peer.output is None:
                    continue
                viewers += peer.output.video is not None
                for track in peer.output.tracks():
                    lab = f'session="{sid}",peer="{pid}",kind="{track.kind}"'
                    sent.append(f"facecast_frames_sent_total{{{lab}}} {track.sent}")
                    dropped.append(f"facecast_frames_dropped_total{{{lab}}} {track.queue.dropped}")
                    depth.append(f"facecast_queue_depth{{{lab}}} {len(track.queue)}")
                off = peer.output.av_offset_s()
                if off is not None:
                    offset.append(f'facecast_av_offset_seconds{{session="{sid}",peer="{pid}"}} {off:.4f}')
        lines += ["# TYPE facecast_viewers gauge", f"facecast_viewers {viewers}"]
        for block in (emitted, skipped, keyframes, sent, dropped, depth, queued, offset, events):
            lines += block
        return "\n".join(lines) + "\n"
