"""Discovery: who to dial and when. Bootnodes are dialed until reached (2 s doubling to 30 s
per peer); addresses learned by peer exchange (a `peers` sync request to each new peer and
to a random peer every 10 s) and by mDNS are dialed while we are under `--p2p.maxpeers`.
Refused and banned peers, and addresses on a banned IP (bootnodes excepted), are not
redialed. Our loop is the only dialer: py-libp2p's auto-connector is stopped at host
set-up.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable

import multiaddr
import trio
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.discovery.mdns.mdns import MDNSDiscovery, create_mdns_discovery
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr

from cairn.p2p import messages as m
from cairn.p2p.api import P2PConfig
from cairn.p2p.bridge import BridgeClosed, TrioThread
from cairn.p2p.peers import PeerLinks, PeerTable
from cairn.p2p.stack import PEER_ERRORS, advertised_ip, describe

log = logging.getLogger("cairn.p2p")

DIAL_TIMEOUT = 5.0
DISCOVERY_INTERVAL = 2.0
MAX_DIAL_DELAY = 30.0
PEER_EXCHANGE_INTERVAL = 10.0
REFUSED_BACKOFF = 60.0
MAX_PEER_LIST_BYTES = 64 * 1024

Request = Callable[[ID, m.SyncRequest, int], Awaitable[bytes]]


def parse_bootnodes(addrs: tuple[str, ...]) -> list[PeerInfo]:
    infos = []
    for addr in addrs:
        try:
            infos.append(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
        except ValueError as exc:  # multiaddr's parse errors and InvalidAddrError
            raise m.PeerMessageError(
                f"--bootnodes: {addr!r} is not a multiaddr with /p2p/<peer id>: {exc}"
            ) from exc
    return infos


def _is_ip_banned(table: PeerTable, info: PeerInfo) -> bool:
    for addr in info.addrs:
        try:
            ip = addr.value_for_protocol("ip4")
        except LookupError:  # multiaddr's ProtocolLookupError: no ip4 part
            continue
        if ip and table.scores.is_ip_banned(str(ip)):
            return True
    return False


class Discovery:
    def __init__(
        self,
        config: P2PConfig,
        chain_id: int,
        bootnodes: list[PeerInfo],
        thread: TrioThread,
        links: PeerLinks,
        request: Request,
    ) -> None:
        self._config = config
        self._chain_id = chain_id
        self._bootnodes = bootnodes
        self._thread = thread
        self._links = links
        self._table: PeerTable = links.table
        self._request = request
        self._me = links.host.get_id()
        self._mdns: MDNSDiscovery | None = None

    # ------------------------------------------------------------ learning addresses
    def learn(self, peer: ID, addrs: list[str]) -> None:
        if peer == self._me or not addrs:
            return
        tcp = [a for a in addrs if "/tcp/" in a and "/ip4/" in a]
        if tcp and peer not in self._table.known:
            addr = tcp[0] if "/p2p/" in tcp[0] else f"{tcp[0]}/p2p/{peer.to_base58()}"
            self._table.known[peer] = addr
            log.debug("learned peer %s at %s", peer.to_base58(), addr)

    async def exchange_peers(self, peer: ID) -> None:
        """Ask `peer` for the peers it knows and remember their addresses."""
        try:
            raw = await self._request(peer, m.SyncRequest("peers"), MAX_PEER_LIST_BYTES)
            addrs = m.decode_peers(raw)
        except m.PeerMessageError as exc:
            self._links.penalise(peer, "protocol", f"peer list: {exc}")
            return
        except trio.TooSlowError:
            log.debug("peer list from %s timed out", peer)
            return
        except PEER_ERRORS as exc:
            log.debug("peer list from %s failed: %s", peer, describe(exc))
            return
        for addr in addrs:
            try:
                info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
            except ValueError:
                continue  # a peer's list may hold an address we cannot use; skip it
            self.learn(info.peer_id, [addr])

    # ------------------------------------------------------------ mDNS
    def start_mdns(self) -> None:
        ip = advertised_ip(self._config.listen_addr)
        port = self._table.listen_port
        # Advertise a dialable address: py-libp2p would advertise the 0.0.0.0 listener
        # itself, and peers would dial their own host.
        self._mdns = create_mdns_discovery(
            self._links.host.get_network(),
            port=port,
            listen_addrs=[f"/ip4/{ip}/tcp/{port}"],
            private_network_fingerprint=f"cairn{self._chain_id}",
        )
        peerDiscovery.register_peer_discovered_handler(self._on_mdns_peer)
        self._mdns.start()
        log.info("mDNS discovery on, advertising /ip4/%s/tcp/%d", ip, port)

    def stop_mdns(self) -> None:
        if self._mdns is None:
            return
        peerDiscovery.unregister_peer_discovered_handler(self._on_mdns_peer)
        try:
            self._mdns.stop()
        except OSError as exc:  # zeroconf's socket may be gone already
            log.debug("stopping mDNS: %s", exc)
        self._mdns = None

    def _on_mdns_peer(self, info: PeerInfo) -> None:
        # Called on zeroconf's thread: hop onto trio before touching any state.
        try:
            self._thread.submit(self._learn_mdns, info.peer_id, [str(a) for a in info.addrs])
        except BridgeClosed:
            log.debug("mDNS found %s while p2p is stopping", info.peer_id)

    def _learn_mdns(self, peer: ID, addrs: list[str]) -> None:
        if peer != self._me and peer not in self._table.known:
            log.info("mDNS: found peer %s at %s", peer.to_base58(), ", ".join(addrs))
        self.learn(peer, addrs)

    # ------------------------------------------------------------ dialing
    def _candidates(self, now: float) -> list[PeerInfo]:
        table = self._table
        connected = self._links.host.get_network().connections
        candidates: list[PeerInfo] = list(self._bootnodes)
        if self._config.discovery or self._config.mdns:
            for peer, addr in list(table.known.items()):
                try:
                    candidates.append(info_from_p2p_addr(multiaddr.Multiaddr(addr)))
                except ValueError:
                    table.known.pop(peer, None)
        seen: set[ID] = set()
        to_dial = []
        for info in candidates:
            peer = info.peer_id
            if peer in seen or peer == self._me or peer in connected:
                continue
            seen.add(peer)
            if table.scores.is_banned(peer.to_base58()):
                continue
            if peer not in table.protected and _is_ip_banned(table, info):
                continue
            refused = table.refused.get(peer)
            if refused is not None and now - refused < REFUSED_BACKOFF:
                continue
            to_dial.append(info)
        return to_dial

    async def loop(self) -> None:
        last_exchange = time.monotonic()
        while True:
            now = time.monotonic()
            wanted = self._config.max_peers - len(self._table.peers)
            to_dial = self._candidates(now)
            if wanted > 0 and to_dial:
                async with trio.open_nursery() as dials:
                    for info in to_dial[:wanted]:
                        dials.start_soon(self._dial, info)
            if self._config.discovery and now - last_exchange > PEER_EXCHANGE_INTERVAL:
                last_exchange = now
                if self._table.peers:
                    self._links.spawn(self.exchange_peers, random.choice(list(self._table.peers)))
            await trio.sleep(DISCOVERY_INTERVAL)

    async def _dial(self, info: PeerInfo) -> None:
        peer = info.peer_id
        table = self._table
        failures, not_before = table.dial_backoff.get(peer, (0, 0.0))
        if time.monotonic() < not_before:
            return
        # py-libp2p refuses to redial a peer for 60 s after one failed dial ("negative
        # cache"); a bootnode that starts a second after us would wait a minute. We pace
        # our own redials (2 s doubling to 30 s), so lift its block first.
        network = self._links.host.get_network()
        unblock = getattr(network, "unblock_peer", None)
        if unblock is not None:
            unblock(peer)
        try:
            with trio.fail_after(DIAL_TIMEOUT):
                await self._links.host.connect(info)
            return
        except trio.TooSlowError:
            reason = f"no answer within {DIAL_TIMEOUT:.0f}s"
        except PEER_ERRORS as exc:
            reason = describe(exc)
        delay = min(DISCOVERY_INTERVAL * 2**failures, MAX_DIAL_DELAY)
        table.dial_backoff[peer] = (failures + 1, time.monotonic() + delay)
        log.debug("dial %s failed (next try in %.0fs): %s", peer.to_base58(), delay, reason)
