#!/bin/sh
# Prints this pod's --bootnodes: every line "<pod DNS name> <peer id>" of the file given
# (default /config/bootnodes.txt) but the pod's own, each name resolved to an IPv4 address,
# since libp2p dials /ip4/ addresses. A name that does not resolve yet (its pod is still
# being created) is waited for. Part of the ConfigMap `cairn testnet init` writes.
set -eu
list=""
me=${HOSTNAME:-$(cat /etc/hostname)}
while read -r host peer; do
    [ -n "$host" ] || continue
    case "$host" in "$me" | "$me".*) continue ;; esac
    until ip=$(getent ahostsv4 "$host" | head -n 1 | cut -d' ' -f1) && [ -n "$ip" ]; do
        echo "waiting for $host to resolve" >&2
        sleep 2
    done
    list="${list:+$list,}/ip4/$ip/tcp/30333/p2p/$peer"
done < "${1:-/config/bootnodes.txt}"
printf '%s\n' "$list"
