"""libp2p networking (issue #4): not built yet."""
