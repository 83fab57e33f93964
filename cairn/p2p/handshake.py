"""The status handshake on `/cairn/status/1`: on every new connection each side asks the
other for its status (chain id, genesis hash, head, listen port, whether it is full) and
answers the other's request. A peer on another network is refused with a log line naming
both sides' values; a full peer is left for another (after asking it for its peers); past
`--p2p.maxpeers` we refuse. A peer that passes is added to the peer table and the core is
told.

Where a refusal needs the other side to act first (hear our status and log the mismatch,
or take our peer list and hang up), we wait for that step or for it to leave, bounded by
the handshake timeout; never a fixed delay. Never decodes anything but a `Status`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import trio
from libp2p.abc import INetConn, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_varint_prefixed

from cairn.p2p import messages as m
from cairn.p2p.api import ChainView, GossipHandlers, P2PConfig
from cairn.p2p.bridge import TrioThread
from cairn.p2p.peers import GONE, HEARD_OUR_STATUS, PeerLinks, PeerRecord, PeerTable
from cairn.p2p.stack import PEER_ERRORS, STREAM_ERRORS, close_stream, describe, read_frame

log = logging.getLogger("cairn.p2p")

HANDSHAKE_TIMEOUT = 10.0
FULL_PEER_BACKOFF = 30.0
STATUS_PROTOCOL = TProtocol(m.STATUS_PROTOCOL)


def our_status(chain: ChainView, table: PeerTable, client: str) -> m.Status:
    head, head_hash = chain.head()
    return m.Status(chain.chain_id, chain.genesis_hash, head, head_hash, table.listen_port, client)


class Handshake:
    def __init__(
        self,
        config: P2PConfig,
        handlers: GossipHandlers,
        thread: TrioThread,
        links: PeerLinks,
        our_status: Callable[[], m.Status],
        exchange_peers: Callable[[ID], Awaitable[None]],
    ) -> None:
        self._config = config
        self._handlers = handlers
        self._thread = thread
        self._links = links
        self._table: PeerTable = links.table
        self.our_status = our_status
        self._exchange_peers = exchange_peers

    # ------------------------------------------------------------ server
    async def serve(self, stream: INetStream) -> None:
        """Answer a peer's status request with ours (marked full if we are)."""
        peer = stream.muxed_conn.peer_id
        try:
            with trio.fail_after(HANDSHAKE_TIMEOUT):
                theirs = m.Status.decode(await read_frame(stream, m.MAX_STATUS_BYTES))
                ours = replace(self.our_status(), full=self._table.is_full_for(peer))
                await stream.write(encode_varint_prefixed(ours.encode()))
                if ours.mismatch(theirs) is None:
                    # Our own handshake with them may still be in flight; their sync
                    # requests (peer exchange first of all) are welcome already.
                    self._table.status_ok[peer] = None
                self._table.signal(peer, HEARD_OUR_STATUS)
        except m.PeerMessageError as exc:
            self._links.on_stream_fault(peer, f"status request: {exc}")
        except trio.TooSlowError:
            log.debug("status request from %s timed out", peer)
        except STREAM_ERRORS as exc:
            log.debug("status request from %s failed: %s", peer, describe(exc))
        finally:
            await close_stream(stream)

    # ------------------------------------------------------------ client
    def start(self, peer: ID, conn: INetConn) -> None:
        """A new connection: handshake once per peer."""
        table = self._table
        if peer in table.peers or peer in table.handshaking:
            return
        table.handshaking.add(peer)
        self._links.spawn(self.run, peer, conn)

    async def run(self, peer: ID, conn: INetConn) -> None:
        try:
            await self._handshake(peer, conn)
        finally:
            self._table.handshaking.discard(peer)

    async def _ask_status(self, peer: ID) -> tuple[m.Status, tuple[str, int] | None]:
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            stream = await self._links.host.new_stream(peer, [STATUS_PROTOCOL])
            try:
                await stream.write(encode_varint_prefixed(self.our_status().encode()))
                raw = await read_frame(stream, m.MAX_STATUS_BYTES)
                remote = stream.get_remote_address()
            finally:
                await close_stream(stream)
        return m.Status.decode(raw), remote

    async def _handshake(self, peer: ID, conn: INetConn) -> None:
        pid = peer.to_base58()
        table, links = self._table, self._links
        try:
            theirs, remote = await self._ask_status(peer)
        except m.PeerMessageError as exc:
            links.on_stream_fault(peer, f"status answer: {exc}")
            return
        except trio.TooSlowError:
            log.info("status handshake with %s timed out; disconnecting", pid)
            await links.disconnect(peer)
            return
        except PEER_ERRORS as exc:
            log.info("status handshake with %s failed: %s; disconnecting", pid, describe(exc))
            await links.disconnect(peer)
            return
        ip = remote[0] if remote else "127.0.0.1"
        remote_addr = f"/ip4/{ip}/tcp/{remote[1]}" if remote else "?"
        mismatch = self.our_status().mismatch(theirs)
        if mismatch is not None:
            table.refused[peer] = time.monotonic()
            links.forget(peer)
            table.stats["refused_mismatch"] += 1
            table.metrics.refused.labels("network-mismatch").inc()
            log.warning(
                "refused peer %s at %s: %s (it runs another network: give every node the "
                "same genesis.json, or drop it from --bootnodes)",
                pid,
                remote_addr,
                mismatch,
            )
            # They log the mismatch too once our server has answered their status request.
            await links.hang_up_after(peer, HEARD_OUR_STATUS, HANDSHAKE_TIMEOUT)
            return
        if theirs.full:
            failures, _ = table.dial_backoff.get(peer, (0, 0.0))
            table.dial_backoff[peer] = (failures, time.monotonic() + FULL_PEER_BACKOFF)
            log.info(
                "peer %s at %s is at its peer limit; trying again in %.0fs",
                pid,
                remote_addr,
                FULL_PEER_BACKOFF,
            )
            if self._config.discovery:
                await self._exchange_peers(peer)  # a full node still points elsewhere
            await links.disconnect(peer)
            return
        if table.is_full_for(peer):
            table.metrics.refused.labels("too-many-peers").inc()
            log.info(
                "refused peer %s at %s: already %d peers (--p2p.maxpeers)",
                pid,
                remote_addr,
                len(table.peers),
            )
            # Our status told them we are full: they ask us for other peers, then hang up.
            await links.hang_up_after(peer, GONE, HANDSHAKE_TIMEOUT)
            return
        inbound = str(getattr(conn, "direction", "")).lower().endswith("inbound")
        listen_addr = f"/ip4/{ip}/tcp/{theirs.listen_port}/p2p/{pid}"
        now = time.time()
        table.add(
            PeerRecord(
                peer,
                ip,
                remote_addr,
                listen_addr,
                inbound,
                theirs.client,
                theirs.head,
                theirs.head_hash,
                connected_at=now,
                status_at=now,
                conn=conn,
            )
        )
        if theirs.listen_port:
            table.known[peer] = listen_addr
        log.info(
            "peer %s connected at %s (%s, head #%d)",
            pid,
            remote_addr,
            "inbound" if inbound else "outbound",
            theirs.head,
        )
        self._thread.notify_core(self._handlers.on_new_peer, pid)
        if self._config.discovery:
            links.spawn(self._exchange_peers, peer)
