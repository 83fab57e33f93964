"""libp2p networking: py-libp2p on its own trio thread, reached by the core only through
`service.P2PService` and the Protocols and records in `api`.

Modules, by job: `stack` (host set-up: TCP + Noise + yamux, gossipsub, and the py-libp2p
0.8.1 corrections), `peers` (the shared peer table; acting on a peer), `handshake` (status
protocol), `gossip` (topics, validators, outbox), `sync` (sync protocol both ways, head
refresh), `discovery` (bootnodes, peer exchange, mDNS), `network` (one run of all of them),
`service` (start/stop, supervision and restarts, the asyncio face), `bridge` (the only
module touching both trio and asyncio), `messages` (wire encodings), `scoring`,
`identity`, `metrics`. See docs/p2p.md.
"""
