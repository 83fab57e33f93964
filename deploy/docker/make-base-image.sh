#!/bin/sh
# Makes the local image `debian:bookworm-slim` from Debian's packages, for machines that reach
# Debian's package archive but no container registry. The Dockerfile then builds unchanged:
# users pull the same tag from a registry instead.
#
#   deploy/docker/make-base-image.sh [TAG]      (default debian:bookworm-slim; needs root)
#
# debootstrap --variant=minbase, then the slimming the official image does (debuerreotype):
# no docs, man pages or locales, no apt caches, services never started by package scripts,
# and the three bookworm suites (main, updates, security) in debian.sources.
set -eu
tag="${1:-debian:bookworm-slim}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
work=$(mktemp -d /tmp/cairn-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
echo "debootstrap bookworm (minbase) into $root ..."
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}

cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
# as the official slim images: keep copyright files, drop the rest of the documentation
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
CFG
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
cat >"$root/etc/apt/apt.conf.d/docker-no-languages" <<'CFG'
Acquire::Languages "none";
CFG
cat >"$root/etc/apt/apt.conf.d/docker-gzip-indexes" <<'CFG'
Acquire::GzipIndexes "true";
CFG
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<CFG
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
CFG
# what the excludes above would have kept out, and the caches of the bootstrap itself
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root/usr/share/info"/* "$root/usr/share/man"/* "$root/usr/share/locale"/* \
  "$root/usr/share/groff"/* "$root/usr/share/lintian"/* "$root/usr/share/linda"/*
rm -rf "$root/var/lib/apt/lists"/* "$root/var/cache/apt"/*.bin "$root/var/cache/apt/archives"/*.deb \
  "$root/var/log"/*.log "$root/var/log/apt"/* "$root/tmp"/* "$root/root/.bash_history"
: >"$root/etc/machine-id"
echo "importing as $tag ..."
tar -C "$root" -c . | docker import \
  --change 'CMD ["bash"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  - "$tag" >/dev/null
docker image inspect --format "$tag {{.Id}} {{.Size}} bytes" "$tag"
