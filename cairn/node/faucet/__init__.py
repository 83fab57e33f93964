"""The faucet (`--faucet`): sends a fixed amount from a keystore key to whoever asks, at most
once per cooldown per address and per client IP, on its own port with a small web page.

Its transactions enter the node's txpool through the same intake as eth_sendRawTransaction
(so a faucet on a full node is forwarded to the producer like any other). Cooldowns live in
LevelDB and survive restarts. Never signs anything but its own transfers.
"""
