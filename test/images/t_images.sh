#!/usr/bin/env bash
# t_images.sh — `make images` end to end: the skip path without a working engine, then (when
# podman or buildah is installed) builds every images/*.Dockerfile (reusing the layer cache) and
# checks each image: it exists, its binary runs inside it, entrypoint/user/labels are what the
# charts expect, every shared library resolves, no toolchain in the runtime stage, size bound,
# and a saved archive carries the full image name.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
. test/lib/testlib.sh

t_begin images

tag=${IMAGE_TAG:-0.1.0}
registry=${IMAGE_REGISTRY:-docker.io}
repo=${IMAGE_REPO:-ambit}
max_mb=${AMBIT_IMAGE_MAX_MB:-150}

# ---- skip path: no engine, or an engine that does not work
out=$(AMBIT_IMAGE_ENGINE=amb-no-such-engine images/build.sh 2>&1)
rc=$?
t_eq "no engine: exit status 0" 0 "$rc"
t_match "no engine: says it skipped and why" 'SKIPPED.*amb-no-such-engine not installed' "$out"
t_match "no engine: says how to install one" 'apt-get install podman' "$out"

fake=$(mktemp -d /tmp/amb-images.XXXXXX)
trap 'rm -rf "$fake"' EXIT
printf '#!/bin/sh\necho "cannot connect to the fake engine" >&2\nexit 125\n' >"$fake/podman"
chmod +x "$fake/podman"
out=$(PATH=$fake:$PATH AMBIT_IMAGE_ENGINE=podman images/build.sh 2>&1)
rc=$?
t_eq "broken engine: exit status 0" 0 "$rc"
t_match "broken engine: names the failure" \
    'SKIPPED.*podman info failed: cannot connect to the fake engine' "$out"

engine=
for e in ${AMBIT_IMAGE_ENGINE:-podman buildah}; do
    if command -v "$e" >/dev/null && "$e" info >/dev/null 2>&1; then
        engine=$e
        break
    fi
done
if [ -z "$engine" ]; then
    echo "t_images: no working podman or buildah here: image builds not tested"
    t_end
    exit
fi

# run a command inside an image (entrypoint replaced); extra engine flags before the image
# podman: no network, and explicit small rlimits — podman's defaults for root are above what a
# machine without CAP_SYS_RESOURCE may set ("error setting rlimits ... operation not permitted")
in_image() {
    local img=$1 ep=$2
    shift 2
    if [ "$engine" = podman ]; then
        podman run --rm --network=none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
            --entrypoint "$ep" "$img" "$@"
    else
        local ctr r
        ctr=$(buildah from --quiet "$img") || return 1
        # chroot isolation: needs no OCI runtime, but refuses any --network other than host
        buildah run --isolation=chroot --network=host "$ctr" -- "$ep" "$@"
        r=$?
        buildah rm "$ctr" >/dev/null
        return $r
    fi
}

insp() { # insp <image> <go template>
    if [ "$engine" = podman ]; then
        podman image inspect --format "$2" "$1"
    else
        buildah inspect --type image --format "$(sed 's/\.Config\./.OCIv1.Config./g' <<<"$2")" "$1"
    fi
}

t0=$SECONDS
t_check "make images builds every image with $engine" make -s images
echo "t_images: build took $((SECONDS - t0)) s"

for f in images/*.Dockerfile; do
    n=$(basename "$f" .Dockerfile)
    img=$registry/$repo/$n:$tag
    bin=/usr/local/bin/$n
    if ! insp "$img" '{{.Config.Entrypoint}}' >/dev/null 2>&1; then
        t_fail "$n: image $img exists"
        continue
    fi
    t_pass "$n: image $img exists"

    t_eq "$n: entrypoint" "[$bin]" "$(insp "$img" '{{.Config.Entrypoint}}')"
    label() { insp "$img" "{{index .Config.Labels \"org.opencontainers.image.$1\"}}"; }
    t_eq "$n: label title" "$n" "$(label title)"
    t_eq "$n: label version" "$tag" "$(label version)"
    t_match "$n: label revision is a commit" '^[0-9a-f]{7,}' "$(label revision)"

    # the program itself, as the image's user
    case $n in
    ambitctl)
        t_match "$n: runs and prints its version" "client version: $tag" \
            "$(in_image "$img" "$bin" version 2>&1)"
        ;;
    ambit-cni)
        t_match "$n: answers CNI VERSION" '"supportedVersions"' \
            "$(in_image "$img" env CNI_COMMAND=VERSION "$bin" </dev/null 2>&1)"
        ;;
    *)
        # no --version flag (yet): --help exits 0 with the usage line
        t_match "$n: runs (--help)" "^usage: $n" "$(in_image "$img" "$bin" --help 2>&1)"
        ;;
    esac

    case $n in
    ambit-node | ambit-cni) want_user=0:0 want_id=0 ;; # setns + nftables: root with capabilities
    *) want_user=1337:1337 want_id=1337 ;;
    esac
    t_eq "$n: configured user" "$want_user" "$(insp "$img" '{{.Config.User}}')"
    t_eq "$n: runs as uid $want_id" "$want_id" "$(in_image "$img" id -u 2>&1)"

    ldd_out=$(in_image "$img" ldd "$bin" 2>&1)
    t_match "$n: ldd resolves libraries" '=> /' "$ldd_out"
    if grep -q 'not found' <<<"$ldd_out"; then
        t_fail "$n: no missing shared library" "$(grep 'not found' <<<"$ldd_out" | tr '\n' ' ')"
    else
        t_pass "$n: no missing shared library"
    fi
    t_eq "$n: no compiler or sources in the runtime image" "clean" \
        "$(in_image "$img" sh -c 'for c in gcc cc make; do command -v $c && exit; done
            test -e /src || echo clean' 2>&1)"

    size=$(insp "$img" '{{.Size}}' 2>/dev/null)
    if [ "$engine" = podman ] && [ -n "$size" ]; then
        mb=$((size / 1000000))
        if [ "$mb" -le "$max_mb" ]; then
            t_pass "$n: size $mb MB <= $max_mb MB"
        else
            t_fail "$n: size $mb MB <= $max_mb MB"
        fi
    fi
done

# an archive for a cluster without a registry: the docker-archive carries the full name
archive=build/images/ambitctl-$tag.tar
t_check "make images-save writes $archive" make -s images-save IMAGES=ambitctl
t_match "archive names $registry/$repo/ambitctl:$tag" "\"$registry/$repo/ambitctl:$tag\"" \
    "$(tar -xOf "$archive" manifest.json 2>&1)"

# ... which a node's containerd imports and runs (when containerd is installed: a private
# instance with its own root, state and socket, stopped at the end)
if command -v containerd >/dev/null && command -v ctr >/dev/null; then
    ctrd=$fake/containerd
    mkdir -p "$ctrd"
    {
        echo 'version = 2'
        echo 'disabled_plugins = ["io.containerd.grpc.v1.cri"]'
        echo "root = \"$ctrd/root\""
        echo "state = \"$ctrd/state\""
        echo '[grpc]'
        echo "  address = \"$ctrd/sock\""
    } >"$ctrd/config.toml"
    containerd --config "$ctrd/config.toml" >"$ctrd/containerd.log" 2>&1 &
    ctrd_pid=$!
    trap 'kill $ctrd_pid 2>/dev/null; wait $ctrd_pid 2>/dev/null; rm -rf "$fake"' EXIT
    ctr_() { ctr --address "$ctrd/sock" -n k8s.io "$@"; }
    t_wait_for 20 ctr_ version
    t_check "containerd: ctr images import $archive" ctr_ images import "$archive"
    t_match "containerd: the imported image runs (ambitctl version)" "client version: $tag" \
        "$(ctr_ run --rm "$registry/$repo/ambitctl:$tag" amb-images-test \
            /usr/local/bin/ambitctl version 2>&1)"
    ctr_ images rm "$registry/$repo/ambitctl:$tag" >/dev/null 2>&1
    kill $ctrd_pid
    wait $ctrd_pid 2>/dev/null
else
    echo "t_images: containerd not installed: importing the archive not tested"
fi
rm -f "$archive"

t_end
