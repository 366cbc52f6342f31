"""/metrics in Prometheus text format (prometheus_client): sessions, frames, per-stage latency
histograms, queue depths and the A/V send offset per viewer.

Each app has its own CollectorRegistry (not the process-wide default), so several servers in one
process (tests, embedding) never collide. Stage latencies are prometheus_client Histograms; everything
that describes live state (sessions, peers, queues) is read at scrape time by LiveCollector."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from facecast.frames import OutputFrame
from facecast.outputs.base import Output

if TYPE_CHECKING:
    from facecast.server.registry import Registry

BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.25, 0.5, 1.0)
STAGES = ("render", "encode", "emit_lateness", "dispatch")
# What render() writes: generate_latest's classic text format (label and metric names escaped with underscores).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class FrameTimings(Output):
    """An output of every session that only measures: per-stage latencies into the server's histograms."""

    kind = "metrics"

    def __init__(self, stages: dict[str, Histogram]) -> None:
        super().__init__()
        self.stages = stages  # the stage histogram's labelled children, one per stage

    def on_frame(self, frame: OutputFrame) -> None:
        if frame.rendered:  # a repeated image took no render time worth a sample
            self.stages["render"].observe(frame.render_s)
        self.stages["encode"].observe(frame.encode_s)
        self.stages["emit_lateness"].observe(max(0.0, (frame.emitted_ns - frame.due_ns) / 1e9))
        self.stages["dispatch"].observe(max(0.0, (time.monotonic_ns() - frame.emitted_ns) / 1e9))


class LiveCollector(Collector):
    """Gauges and per-session counters read from the server's live state at each scrape: they are owned
    by sessions and peers that come and go, so nothing is kept between scrapes."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.source: Registry | None = None  # set by Metrics.render just before a scrape

    def collect(self) -> Iterator[Metric]:
        registry = self.source
        sessions = registry.sessions if registry is not None else {}
        yield GaugeMetricFamily("facecast_sessions", "Live sessions.", value=len(sessions))
        yield GaugeMetricFamily(
            "facecast_uptime_seconds", "Seconds since the server started.", value=time.time() - self.started
        )
        viewers = GaugeMetricFamily("facecast_viewers", "WebRTC peers that receive the avatar's video.")
        emitted = CounterMetricFamily(
            "facecast_frames_emitted", "Frames each session's worker emitted.", labels=["session"]
        )
        skipped = CounterMetricFamily(
            "facecast_frames_skipped",
            "Frames emitted repeating the previous image: the worker was late by more than SKIP_AFTER_FRAMES (2) "
            "frames and skipped rendering (audio unaffected).",
            labels=["session"],
        )
        keyframes = CounterMetricFamily(
            "facecast_keyframes",
            "Keyframes of each session's shared video encoder (new viewers, picture loss, interrupts and "
            "queue overflows each ask for one).",
            labels=["session", "codec"],
        )
        track_labels = ["session", "peer", "kind"]
        sent = CounterMetricFamily(
            "facecast_frames_sent", "Frames sent to each viewer track.", labels=track_labels
        )
        dropped = CounterMetricFamily(
            "facecast_frames_dropped",
            "Frames dropped for a viewer track that fell behind.",
            labels=track_labels,
        )
        depth = GaugeMetricFamily(
            "facecast_queue_depth", "Frames queued for each viewer track.", labels=track_labels
        )
        queued = GaugeMetricFamily(
            "facecast_queued_speech_seconds", "Speech queued in each session, in seconds.", labels=["session"]
        )
        offset = GaugeMetricFamily(
            "facecast_av_offset_seconds",
            "Video minus audio send time for the same media instant.",
            labels=["session", "peer"],
        )
        events = CounterMetricFamily(
            "facecast_events", "Events of each session, by type.", labels=["session", "type"]
        )
        watching = 0
        for sid, live in sessions.items():
            rt = live.runtime
            emitted.add_metric([sid], rt.frames_emitted)
            skipped.add_metric([sid], rt.frames_skipped)
            for enc in rt.encoders.active():
                keyframes.add_metric([sid, enc.codec], enc.keyframes)
            queued.add_metric([sid], rt.queue.queued_seconds())
            for kind, count in rt.events.counts.items():
                events.add_metric([sid, kind], count)
            for pid, peer in live.peers.items():
                if peer.output is None:
                    continue
                watching += peer.output.video is not None
                for track in peer.output.tracks():
                    labels = [sid, pid, track.kind]
                    sent.add_metric(labels, track.sent)
                    dropped.add_metric(labels, track.queue.dropped)
                    depth.add_metric(labels, len(track.queue))
                off = peer.output.av_offset_s()
                if off is not None:
                    offset.add_metric([sid, pid], off)
        viewers.add_metric([], watching)
        yield from (viewers, emitted, skipped, keyframes, sent, dropped, depth, queued, offset, events)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        stage_seconds = Histogram(
            "facecast_stage_seconds",
            "Per-stage latency: engine render, shared video encoding (all codecs), lateness against the frame "
            "clock, worker-to-loop dispatch.",
            ["stage"],
            buckets=BUCKETS_S,
            registry=self.registry,
        )
        self.stages = {stage: stage_seconds.labels(stage=stage) for stage in STAGES}
        self.started = time.time()
        self.live = LiveCollector(self.started)
        self.registry.register(self.live)

    def frame_timings(self) -> FrameTimings:
        """An output to add to each session."""
        return FrameTimings(self.stages)

    def render(self, registry: Registry) -> str:
        """The exposition text of every metric, live state read from `registry` now."""
        self.live.source = registry
        return generate_latest(self.registry).decode()
