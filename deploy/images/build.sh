#!/usr/bin/env bash
# Builds the images that docker-compose.yml needs, where no image registry
# answers (CI, and machines with only a Debian mirror and the Go proxy):
#
#   dynamo:<hash>     FROM scratch with the static binary `go build` makes here
#                     (deploy/images/dynamo.Dockerfile)
#   dynamo-lb:<hash>  a minimal Debian made with debootstrap from the host's
#                     apt mirror, with haproxy and nginx installed, imported
#                     with `docker import`; the compose file runs both load
#                     balancers from it
#
# Each tag is a hash of that image's inputs (the binary; the Debian recipe),
# so a second run with the same inputs builds nothing. On stdout it prints
# only the variables docker-compose.yml reads, ready for eval:
#
#   eval "$(deploy/images/build.sh)" && docker-compose up -d
#
# Usage: deploy/images/build.sh [dynamo] [lb]      (no argument: both)
#
# Root is needed only to debootstrap and chroot (through `sudo -n` when not
# root), and only when the load balancer image is missing. Settings:
#   DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR  default: from /etc/apt/sources*
#   DEBIAN_SUITE                           default: bookworm
#   DYNAMO_IMAGE_CACHE                     downloaded .debs and the lock;
#                                          default ~/.cache/dynamo-images
#   DYNAMO_SOURCE                          the module whose ./cmd/dynamo is
#                                          built; default this repository
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
suite=${DEBIAN_SUITE:-bookworm}
cache=${DYNAMO_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dynamo-images}
lb_packages=(haproxy nginx-light)

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# Temporary folders, removed on exit; $sudo is how to be root for debootstrap.
sudo=
temp=()
cleanup() { [ ${#temp[@]} -eq 0 ] || $sudo rm -rf --one-file-system "${temp[@]}"; }
trap cleanup EXIT

# apt_uri prints the first URI in the host's apt sources whose path ends
# in $1 (/debian or /debian-security), from one-line and deb822 files.
apt_uri() {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        sed -E 's/\[[^]]*\]//; s/^[[:space:]]+//' |
        awk '$1 == "deb" || $1 == "URIs:" { for (i = 2; i <= NF; i++) print $i }' |
        grep -E "^https?://.*$1/?\$" | head -n 1 || true
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

label=org.dynamo-kv.built-by=deploy/images/build.sh

# prune_older removes this script's images of $1's repository made before
# $1, but for the newest two (a concurrent run may be about to start them);
# one a container still uses stays.
prune_older() {
    docker image ls "${1%%:*}" --filter "label=$label" --filter "before=$1" --format '{{.Repository}}:{{.Tag}}' |
        tail -n +3 | xargs -r docker image rm >/dev/null 2>&1 || true
}

build_dynamo() {
    local ctx start sum
    start=$SECONDS
    ctx=$(mktemp -d)
    temp+=("$ctx")
    mkdir "$ctx/data"
    cp "$repo/deploy/images/dynamo.Dockerfile" "$ctx/Dockerfile"
    # Static, as the Dockerfile builds it, but without -trimpath: then the
    # compiled packages are those of a plain `go build`, and the build cache
    # serves both this and the end-to-end tests' build of the binary.
    (cd "${DYNAMO_SOURCE:-$repo}" && CGO_ENABLED=0 go build -ldflags='-s -w' -o "$ctx/dynamo" ./cmd/dynamo) ||
        die "go build ./cmd/dynamo failed"
    sum=$(cat "$ctx/dynamo" "$ctx/Dockerfile" | sha256sum | cut -c1-16)
    dynamo_image=dynamo:$sum
    if image_exists "$dynamo_image"; then
        log "$dynamo_image exists (go build took $((SECONDS - start))s)"
        return
    fi
    docker build --quiet --tag "$dynamo_image" --label "$label" "$ctx" >/dev/null ||
        die "docker build of $dynamo_image failed"
    log "built $dynamo_image in $((SECONDS - start))s"
    prune_older "$dynamo_image"
}

# lb_rootfs makes the load balancers' root file system in $1. Its text is
# part of the image's hash: edit it and the image is rebuilt.
lb_rootfs() {
    local root=$1
    $sudo debootstrap --variant=minbase --cache-dir="$cache/debs" "$suite" "$root" "$mirror" >&2
    # Packages must not start services inside the chroot (it shares the
    # host's network): policy-rc.d 101 forbids it.
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$root/usr/sbin/policy-rc.d" >/dev/null
    $sudo chmod 755 "$root/usr/sbin/policy-rc.d"
    {
        echo "deb $mirror $suite main"
        echo "deb $mirror $suite-updates main"
        if [ -n "$security_mirror" ]; then echo "deb $security_mirror $suite-security main"; fi
    } | $sudo tee "$root/etc/apt/sources.list" >/dev/null
    # The chroot's _apt user cannot write to a folder made by sudo's caller.
    local apt=(apt-get -q -o APT::Sandbox::User=root)
    $sudo chroot "$root" "${apt[@]}" update >&2
    $sudo chroot "$root" env DEBIAN_FRONTEND=noninteractive \
        "${apt[@]}" -y --no-install-recommends -o Dpkg::Use-Pty=0 install "${lb_packages[@]}" >&2
    $sudo chroot "$root" apt-get clean
    $sudo rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
        "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
    $sudo rm -f "$root/usr/sbin/policy-rc.d"
}

build_lb() {
    local root start sum
    start=$SECONDS
    sum=$( (echo "$suite" "${lb_packages[*]}"; declare -f lb_rootfs) | sha256sum | cut -c1-16)
    lb_image=dynamo-lb:$sum
    if image_exists "$lb_image"; then
        log "$lb_image exists"
        return
    fi
    mirror=${DEBIAN_MIRROR:-$(apt_uri /debian)}
    security_mirror=${DEBIAN_SECURITY_MIRROR:-$(apt_uri /debian-security)}
    [ -n "$mirror" ] || die "no Debian mirror in /etc/apt/sources*; set DEBIAN_MIRROR"
    command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
    if [ "$(id -u)" != 0 ]; then
        sudo -n true 2>/dev/null || die "debootstrap needs root: run as root or with password-less sudo"
        sudo="sudo -n"
    fi
    mkdir -p "$cache/debs"
    root=$(mktemp -d "${TMPDIR:-/var/tmp}/dynamo-lb-rootfs.XXXXXX")
    temp+=("$root")
    log "debootstrap $suite from $mirror into $root"
    lb_rootfs "$root"
    $sudo tar -C "$root" --numeric-owner -c . |
        docker import --change "LABEL $label" - "$lb_image" >/dev/null ||
        die "docker import of $lb_image failed"
    log "built $lb_image in $((SECONDS - start))s"
    prune_older "$lb_image"
}

command -v docker >/dev/null || die "docker is not installed"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || die "no Docker engine answers"

want_dynamo= want_lb=
[ $# -eq 0 ] && set -- dynamo lb
for arg; do
    case $arg in
    dynamo) want_dynamo=1 ;;
    lb) want_lb=1 ;;
    *) die "unknown image $arg (want dynamo or lb)" ;;
    esac
done

# One build at a time per cache, so that concurrent test runs wait for the
# first one's images instead of debootstrapping twice.
mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9

if [ -n "$want_dynamo" ]; then
    build_dynamo
    echo "DYNAMO_IMAGE=$dynamo_image"
fi
if [ -n "$want_lb" ]; then
    build_lb
    echo "HAPROXY_IMAGE=$lb_image"
    echo "NGINX_IMAGE=$lb_image"
fi
