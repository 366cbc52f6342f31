"""ICE settings for the server's peer connections: STUN/TURN servers and forced host addresses
(facecast_client.ice does the forcing, for the server and its clients alike). A server that listens
on loopback only, with no addresses configured, offers 127.0.0.1 alone.
"""

from __future__ import annotations

from facecast.server.auth import is_loopback

LOOPBACK_ICE_ADDRESS = "127.0.0.1"


def host_candidate_addresses(configured: list[str], listen_host: str) -> list[str]:
    """The host candidates a server peer offers: the configured ones; else 127.0.0.1 alone when the server
    listens on loopback only (it is not reachable from elsewhere, so neither should its media be); else
    [] (aioice's default: every non-loopback interface)."""
    if configured:
        return list(configured)
    return [LOOPBACK_ICE_ADDRESS] if is_loopback(listen_host) else []
