"""`DisconnectWatch`: how the test peers (`rogue`, `byzantine`) see a node hang up on them."""

from __future__ import annotations

from collections.abc import Callable

import multiaddr
import trio
from libp2p.abc import INetConn, INetStream, INetwork, INotifee


def _nothing() -> None:
    return None


class DisconnectWatch(INotifee):
    """A libp2p notifee: whenever one of the host's connections closes, `gone` is set and
    `on_disconnect` called (on the host's trio thread); `renew` starts a fresh wait."""

    def __init__(self, on_disconnect: Callable[[], None] = _nothing) -> None:
        self.gone = trio.Event()
        self._on_disconnect = on_disconnect

    def renew(self) -> None:
        self.gone = trio.Event()

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        self.gone.set()
        self._on_disconnect()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass
