#!/bin/sh
# The compose file's one-shot `setup` service (written by `cairn testnet init`): runs as root
# with no network, the testnet folder mounted read-only at /testnet and every node's volume
# at /volumes/<node>. It copies into each volume what that node reads at start, owned by the
# image's `cairn` user and readable by it alone:
#   <node>/p2p/nodekey      -> /data/p2p/nodekey       (every node: its libp2p identity)
#   <node>/keystore/UTC--*  -> /data/keystore/         (signing roles: sequencer, validator)
#   <node>/password.txt     -> /data/password.txt      (the keystore's password)
# Host files keep the host user's ownership and mode 0600, which the node's user could not
# read through a bind mount. Idempotent: it runs on every `up`; chain data is never touched.
set -eu
uid=$(id -u cairn)
gid=$(id -g cairn)
for volume in /volumes/*; do
  name=$(basename "$volume")
  src="/testnet/$name"
  [ -d "$src" ] || { echo "setup: no folder $src for volume $name" >&2; exit 1; }
  install -d -o "$uid" -g "$gid" -m 0750 "$volume"
  if [ -f "$src/p2p/nodekey" ]; then
    install -d -o "$uid" -g "$gid" -m 0700 "$volume/p2p"
    install -o "$uid" -g "$gid" -m 0600 "$src/p2p/nodekey" "$volume/p2p/nodekey"
  fi
  if [ -d "$src/keystore" ]; then
    install -d -o "$uid" -g "$gid" -m 0700 "$volume/keystore"
    for key in "$src"/keystore/UTC--*; do
      [ -f "$key" ] && install -o "$uid" -g "$gid" -m 0600 "$key" "$volume/keystore/"
    done
  fi
  if [ -f "$src/password.txt" ]; then
    install -o "$uid" -g "$gid" -m 0600 "$src/password.txt" "$volume/password.txt"
  fi
  echo "setup: $name ready"
done
