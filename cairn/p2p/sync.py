"""The sync protocol `/cairn/<chainid>/sync/1` (request/response, msgpack), both sides:
serving `status`, `peers` and `range` requests from peers past the handshake, within a
per-peer budget of requests and answer bytes (`limits.ServeBudget`: a peer over it is
refused, scored down and hung up on), and asking peers for blocks (`fetch_range`: peers in
good standing first, the next one when a peer answers nothing, junk or not in time) and
for their head every 2 s (`status_loop`), which keeps each peer's announced head, and the
time it said so, fresh in the peer table.

Blocks cross as opaque encoded bundles: the core decodes and judges them. Storage reads
for the server run on trio's worker threads (committed data is immutable).
"""

from __future__ import annotations

import logging
import random
import weakref
from collections.abc import Callable

import trio
from libp2p.abc import IMuxedConn, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID
from libp2p.utils.varint import encode_varint_prefixed

from cairn.errors import CairnError
from cairn.p2p import messages as m
from cairn.p2p.api import ChainView
from cairn.p2p.limits import ServeBudget
from cairn.p2p.peers import PeerLinks, PeerTable
from cairn.p2p.stack import PEER_ERRORS, STREAM_ERRORS, close_stream, describe, read_frame

log = logging.getLogger("cairn.p2p")

REQUEST_TIMEOUT = 30.0
STATUS_REFRESH_INTERVAL = 2.0
RANGE_CANDIDATES = 3


class NoPeer(CairnError):
    """No connected peer can answer this request."""


class SyncProtocol:
    def __init__(
        self,
        chain: ChainView,
        links: PeerLinks,
        our_status: Callable[[], m.Status],
    ) -> None:
        self._chain = chain
        self._links = links
        self._table: PeerTable = links.table
        self._our_status = our_status
        self.protocol = TProtocol(m.sync_protocol(chain.chain_id))
        self.budget = ServeBudget()
        # Connections already refused and being hung up: their requests still in flight are
        # refused too, but the peer is charged once per connection.
        self._hanging_up: weakref.WeakSet[IMuxedConn] = weakref.WeakSet()

    # ------------------------------------------------------------ server
    async def serve(self, stream: INetStream) -> None:
        peer = stream.muxed_conn.peer_id
        table = self._table
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                request = m.SyncRequest.decode(await read_frame(stream, m.MAX_REQUEST_BYTES))
                if peer not in table.peers and peer not in table.status_ok:
                    return
                refusal = self.budget.admit(peer.to_base58())
                if refusal is not None:
                    self._refuse(stream.muxed_conn, refusal)
                    return
                if request.kind == "status":
                    answer = self._our_status().encode()
                elif request.kind == "peers":
                    addrs = [p.listen_addr for p in table.peers.values() if p.peer_id != peer]
                    answer = m.encode_peers(addrs)
                else:
                    bundles = await trio.to_thread.run_sync(
                        self._load_range, request.start, request.count
                    )
                    answer = m.encode_blocks(bundles)
                self.budget.charge(peer.to_base58(), len(answer))
                await stream.write(encode_varint_prefixed(answer))
        except m.PeerMessageError as exc:
            self._links.on_stream_fault(peer, f"sync request: {exc}")
        except trio.TooSlowError:
            log.debug("sync request from %s timed out", peer)
        except STREAM_ERRORS as exc:
            log.debug("sync request from %s failed: %s", peer, describe(exc))
        finally:
            await close_stream(stream)

    def _refuse(self, conn: IMuxedConn, why: str) -> None:
        """Over budget: no answer (the stream closes), points off, and we hang up; a peer
        that keeps coming back is banned by its score."""
        table = self._table
        table.stats["refused_over_budget"] += 1
        table.metrics.sync_refused.inc()
        if conn in self._hanging_up:
            return
        self._hanging_up.add(conn)
        peer = conn.peer_id
        self._links.penalise(peer, "over-budget", f"sync requests over budget: {why}")
        self._links.forget(peer)  # hung up on purpose: not one to redial
        self._links.spawn(self._links.disconnect, peer)

    def _load_range(self, start: int, count: int) -> list[bytes]:
        bundles: list[bytes] = []
        size = 0
        head, _ = self._chain.head()
        for number in range(start, min(start + count, head + 1)):
            bundle = self._chain.load_bundle(number)
            if bundle is None:
                break
            size += len(bundle)
            if bundles and size > m.MAX_RANGE_RESPONSE_BYTES:
                break
            bundles.append(bundle)
        return bundles

    # ------------------------------------------------------------ client
    async def request(self, peer: ID, request: m.SyncRequest, limit: int) -> bytes:
        """One request and its answer. Raises PeerMessageError for a malformed answer,
        trio.TooSlowError, or one of PEER_ERRORS when the peer or connection fails."""
        with trio.fail_after(REQUEST_TIMEOUT):
            stream = await self._links.host.new_stream(peer, [self.protocol])
            try:
                await stream.write(encode_varint_prefixed(request.encode()))
                return await read_frame(stream, limit)
            finally:
                await close_stream(stream)

    async def fetch_range(self, start: int, count: int) -> tuple[str, list[bytes]]:
        """Blocks `start`.. from the best peer that has them: (peer id, encoded bundles).

        Peers in good standing (score 0) come first, highest head first; a peer that was
        penalised (a lie about its head, junk, a block the core rejected) is asked only
        when nobody else has the blocks. A peer whose answer is junk, or empty although it
        announced a head at or past `start`, is penalised and the next one asked."""
        scores = self._table.scores
        candidates = sorted(
            (p for p in self._table.peers.values() if p.head >= start),
            key=lambda p: (scores.score(p.peer_id.to_base58()) < 0, -p.head, random.random()),
        )
        if not candidates:
            raise NoPeer(f"no peer has block #{start}")
        last_error = ""
        for peer in candidates[:RANGE_CANDIDATES]:
            pid = peer.peer_id.to_base58()
            try:
                raw = await self.request(
                    peer.peer_id,
                    m.SyncRequest("range", start, count),
                    m.MAX_RANGE_RESPONSE_BYTES + 1024,
                )
                bundles = m.decode_blocks(raw)
                if not bundles:
                    raise m.PeerMessageError(
                        f"no blocks from #{start} although it announced head #{peer.head}"
                    )
                return pid, bundles
            except m.PeerMessageError as exc:
                self._links.penalise(peer.peer_id, "bad-sync", f"block range answer: {exc}")
                last_error = str(exc)
            except trio.TooSlowError:
                # Rare for an honest peer (an answer is at most 12 MiB); a peer that keeps
                # stalling would otherwise stay first in line and cost every round this wait.
                self._links.penalise(
                    peer.peer_id,
                    "slow-sync",
                    f"no answer to a range request within {REQUEST_TIMEOUT:.0f}s",
                )
                last_error = f"{pid} timed out"
            except PEER_ERRORS as exc:
                log.info("range request to %s failed: %s", pid, describe(exc))
                last_error = describe(exc)
        raise NoPeer(f"no peer answered a range request from #{start}: {last_error}")

    async def status_loop(self) -> None:
        """Keep every peer's head fresh; the follower syncs toward the best one."""
        while True:
            await trio.sleep(STATUS_REFRESH_INTERVAL)
            for peer in list(self._table.peers):
                self._links.spawn(self.refresh_status, peer)

    async def refresh_status(self, peer: ID) -> None:
        try:
            raw = await self.request(peer, m.SyncRequest("status"), m.MAX_STATUS_BYTES)
            status = m.Status.decode(raw)
        except m.PeerMessageError as exc:
            self._links.penalise(peer, "protocol", f"status answer: {exc}")
            return
        except trio.TooSlowError:
            log.debug("status refresh from %s timed out", peer)
            return
        except PEER_ERRORS as exc:
            log.debug("status refresh from %s failed: %s", peer, describe(exc))
            return
        self._table.update_head(peer, status.head, status.head_hash)
