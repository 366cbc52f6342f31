"""A closed viewer's peer, and with it its queued frames (hundreds of MB of images per viewer), is freed at
once by reference counting, not left in a reference cycle for Python's cyclic GC: the soak's fault run
grew the server by ~300 MB per reconnecting viewer when the offer timer's task held its peer."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest
from facecast_client import FacecastClient, Viewer

from facecast.server.runner import RunningServer


@pytest.fixture
def no_cyclic_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()  # only reference counting frees objects now: a cycle would keep the peer alive
    try:
        yield
    finally:
        gc.enable()


async def test_a_closed_peer_is_freed_without_the_cyclic_gc(
    server: RunningServer, client: FacecastClient, no_cyclic_gc: None
) -> None:
    sid = (await client.create_session())["id"]
    viewer = await client.watch(sid, Viewer(keep_frames=False))
    await asyncio.wait_for(viewer.received.first_video_at.wait(), timeout=30)
    live = server.registry.get(sid)
    peer = next(iter(live.peers.values()))
    assert peer.output is not None
    # The peer and its output (the frame queues); aiortc's RTCPeerConnection has cycles of its own, but
    # holds no frames once its tracks are gone.
    freed = [weakref.ref(peer), weakref.ref(peer.output)]
    await server.registry.close_peer(live, peer)
    del peer
    for _ in range(300):  # aiortc's own tasks let go within moments
        if all(ref() is None for ref in freed):
            break
        await asyncio.sleep(0.02)
    assert [ref() is None for ref in freed] == [True, True]
    await viewer.close()
