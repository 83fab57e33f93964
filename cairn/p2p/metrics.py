"""Prometheus figures of the p2p layer (peers, gossip, invalid messages, bans, refusals).

Each node process owns one registry so a test process can build several nodes' metrics.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class P2PMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.peers = Gauge(
            "cairn_p2p_peers", "connected peers past the handshake", registry=registry
        )
        self.gossip_received = Counter(
            "cairn_p2p_gossip_received_total",
            "gossip messages judged, by topic",
            ["topic"],
            registry=registry,
        )
        self.invalid_messages = Counter(
            "cairn_p2p_invalid_messages_total",
            "invalid messages from peers, by topic and fault",
            ["topic", "fault"],
            registry=registry,
        )
        self.bans = Counter("cairn_p2p_bans_total", "peers banned", registry=registry)
        self.ip_bans = Counter(
            "cairn_p2p_ip_bans_total",
            "IP addresses banned (after several banned peer ids from one IP)",
            registry=registry,
        )
        self.sync_refused = Counter(
            "cairn_p2p_sync_refused_total",
            "sync requests refused because the peer was over its serving budget",
            registry=registry,
        )
        self.refused = Counter(
            "cairn_p2p_refused_peers_total",
            "peers refused at the handshake, by reason",
            ["reason"],
            registry=registry,
        )
        self.sync_blocks = Counter(
            "cairn_p2p_sync_blocks_total", "blocks received by range sync", registry=registry
        )
