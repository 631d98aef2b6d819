#!/usr/bin/env bash
# images/base.sh <podman|buildah> <image name> — make sure the Debian base image the Dockerfiles
# build FROM exists in the engine's storage, without any registry: the root filesystem is made
# with `debootstrap --variant=minbase` from the machine's configured Debian mirror, trimmed like
# debian:bookworm-slim (no docs/man pages/locales, no apt lists or .deb cache), and imported.
#
# The tarball is cached in $AMBIT_TOOLS_CACHE/images (default /var/cache/ambit-tools/images) with
# a .done stamp; its name carries a hash of this script and the mirror, so a changed recipe makes
# a new one. The imported image carries that hash as a label: if the image is present with the
# same hash nothing is done, if the tarball is cached it is only imported (seconds).
#
# Environment: AMBIT_DEBIAN_MIRROR / AMBIT_DEBIAN_SECURITY_MIRROR (default: the machine's apt
# sources, else deb.debian.org), AMBIT_DEBIAN_SUITE (default bookworm).
set -euo pipefail

engine=${1:?usage: images/base.sh <podman|buildah> <image name>}
image=${2:?usage: images/base.sh <podman|buildah> <image name>}
suite=${AMBIT_DEBIAN_SUITE:-bookworm}
cache=${AMBIT_TOOLS_CACHE:-/var/cache/ambit-tools}/images

# first URI of the machine's apt sources (deb822 or one-line) whose path ends in $1
apt_uri() {
    local want=$1 f uri
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list \
        /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        # deb822 "URIs: ..." or one-line "deb [options] uri suite ..."
        uri=$(awk -v want="$want" '
            /^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ ("/" want "/?$")) { print $i; exit } }
            /^deb / {
                for (i = 2; i <= NF; i++)
                    if ($i ~ /^[a-z]+:\/\//) {
                        if ($i ~ ("/" want "/?$")) { print $i; exit }
                        break
                    }
            }' "$f")
        if [ -n "$uri" ]; then
            echo "${uri%/}"
            return
        fi
    done
}

mirror=${AMBIT_DEBIAN_MIRROR:-$(apt_uri debian)}
mirror=${mirror:-http://deb.debian.org/debian}
security=${AMBIT_DEBIAN_SECURITY_MIRROR:-$(apt_uri debian-security)}
security=${security:-http://deb.debian.org/debian-security}

recipe=$( (cat "$0"; echo "$suite $mirror $security") | sha256sum | cut -c1-12)
tarball=$cache/debian-$suite-minbase-$recipe.tar

have_image() {
    local got fmt='{{index .Labels "dev.ambit.base-recipe"}}'
    case $engine in *buildah) fmt='{{index .OCIv1.Config.Labels "dev.ambit.base-recipe"}}' ;; esac
    got=$("$engine" inspect --type image --format "$fmt" "$image" 2>/dev/null) || return 1
    [ "$got" = "$recipe" ]
}

if have_image; then
    echo "images: base $image is current (recipe $recipe)"
    exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

if [ ! -e "$tarball.done" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "images: building the base image needs root (debootstrap)" >&2
        exit 1
    fi
    if ! command -v debootstrap >/dev/null; then
        echo "images: debootstrap is missing (apt-get install debootstrap)," \
            "or pass IMAGE_BASE=docker.io/library/debian:bookworm-slim on a machine that can pull" >&2
        exit 1
    fi
    echo "images: debootstrap $suite (minbase) from $mirror into $tarball"
    root=$(mktemp -d "$cache/rootfs.XXXXXX")
    trap 'rm -rf "$root"' EXIT
    debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
        tail -20 "$root.log" >&2
        echo "images: debootstrap failed (full log: $root.log)" >&2
        exit 1
    }
    rm -f "$root.log"

    # the apt sources a container uses (the same mirror, plus updates and security)
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # slim: later package installs leave out docs, man pages and translations too
    cat >"$root/etc/dpkg/dpkg.cfg.d/ambit-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
    cat >"$root/etc/apt/apt.conf.d/ambit-container" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,info,lintian}/* "$root"/var/lib/apt/lists/* \
        "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log \
        "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
    # the engine provides these per container
    : >"$root/etc/resolv.conf"
    : >"$root/etc/hostname"

    tar --numeric-owner --xattrs -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    touch "$tarball.done"
    for old in "$cache/debian-$suite-minbase-"*.tar; do
        [ "$old" = "$tarball" ] || rm -f "$old" "$old.done"
    done
    rm -rf "$root"
    trap - EXIT
fi

# another `make images` may have imported it while we waited for the lock
if have_image; then
    exit 0
fi
echo "images: importing $tarball as $image"
label="dev.ambit.base-recipe=$recipe"
case $engine in
*buildah)
    ctr=$(buildah from scratch)
    buildah add --quiet "$ctr" "$tarball" / >/dev/null
    buildah config --cmd '["/bin/bash"]' --label "$label" \
        --label "org.opencontainers.image.title=debian $suite minbase (local)" "$ctr"
    buildah commit --quiet --rm "$ctr" "$image" >/dev/null
    ;;
*)
    "$engine" import --quiet --change 'CMD ["/bin/bash"]' --change "LABEL $label" \
        --change "LABEL org.opencontainers.image.title=\"debian $suite minbase (local)\"" \
        "$tarball" "$image" >/dev/null
    ;;
esac
have_image || {
    echo "images: $image imported but its recipe label is not $recipe" >&2
    exit 1
}
