"""LevelDB storage: the key schema, py-evm's database backend, and the atomic block commit.

Owns every byte Cairn writes to `<datadir>/chaindata`. Must never decide what is valid: it
stores what execution and consensus hand it, each block in one synced batch.
"""
