"""ICE settings for a peer connection: an explicit STUN/TURN list, and host candidates on chosen addresses.

aioice offers every non-loopback interface address as a host candidate and has no option to choose
them. To offer exactly the given addresses (127.0.0.1 for a client of a local server; a server's
configured ones) we replace, on this peer connection's own aioice Connections, the candidate
gathering with one that binds the given addresses; every other peer connection and aioice itself stay
untouched. The facecast server uses this module too (one copy of the workaround).
"""

from __future__ import annotations

import types
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection


def rtc_configuration(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    """An explicit (possibly empty) server list: aiortc otherwise adds Google's public STUN server."""
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers
    ]
    return RTCConfiguration(iceServers=servers)


def restrict_host_candidates(pc: RTCPeerConnection, addresses: list[str]) -> None:
    """Offer only `addresses` as host candidates on pc's transports (call before setLocalDescription).

    A no-op for an empty list (aioice's default: all non-loopback interfaces).
    """
    if not addresses:
        return
    for gatherer in _gatherers(pc):
        conn = gatherer._connection
        if getattr(conn, "_facecast_hosts", None) is None:
            conn._facecast_hosts = list(addresses)
            conn.gather_candidates = types.MethodType(_gather_on_addresses, conn)


def _gatherers(pc: RTCPeerConnection) -> list[Any]:
    found = []
    for transceiver in pc.getTransceivers():
        for dtls in (transceiver.sender.transport, transceiver.receiver.transport):
            if dtls is not None:
                found.append(dtls.transport.iceGatherer)
    sctp = pc.sctp
    if sctp is not None:
        found.append(sctp.transport.transport.iceGatherer)
    return found


async def _gather_on_addresses(self: Any) -> None:
    # Mirrors aioice.Connection.gather_candidates (aioice 0.13), with the host list replaced.
    import asyncio

    if self._local_candidates_start:
        return
    self._local_candidates_start = True
    coros = [
        self.get_component_candidates(component=component, addresses=self._facecast_hosts)
        for component in self._components
    ]
    for candidates in await asyncio.gather(*coros):
        self._local_candidates += candidates
    self._local_candidates_end = True
