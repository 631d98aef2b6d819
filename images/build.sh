#!/usr/bin/env bash
# images/build.sh [--save] [name...] — what `make images` runs: one OCI image per
# images/<name>.Dockerfile (default: all of them), built with podman or buildah. Skips with a
# message and exit status 0 when neither is installed and working. --save also writes each image
# as a docker-archive tarball to build/images/<name>-<tag>.tar (loadable with `podman load`,
# `docker load`, `kind load image-archive`, `ctr -n k8s.io images import`).
#
# Environment (the Makefile passes its variables of the same names):
#   IMAGE_REGISTRY (docker.io) IMAGE_REPO (ambit) IMAGE_TAG (0.1.0): the image is
#       $IMAGE_REGISTRY/$IMAGE_REPO/<name>:$IMAGE_TAG — by default exactly what a kubelet makes of
#       the charts' `ambit/<name>:<appVersion>`, so a loaded archive needs no pull.
#   IMAGE_BASE: the Debian image both stages build FROM. Default localhost/ambit/debian:bookworm,
#       made here with debootstrap (images/base.sh: no registry needed); on a machine that can
#       pull, IMAGE_BASE=docker.io/library/debian:bookworm-slim works too.
#   AMBIT_IMAGE_ENGINE (podman|buildah), AMBIT_IMAGE_ISOLATION (podman: oci, buildah: chroot).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

LOCAL_BASE=localhost/ambit/debian:bookworm
registry=${IMAGE_REGISTRY:-docker.io}
repo=${IMAGE_REPO:-ambit}
tag=${IMAGE_TAG:-0.1.0}
base=${IMAGE_BASE:-$LOCAL_BASE}
outdir=build/images

save=0
if [ "${1:-}" = --save ]; then
    save=1
    shift
fi
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in images/*.Dockerfile; do names+=("$(basename "$f" .Dockerfile)"); done
fi
for n in "${names[@]}"; do
    [ -f "images/$n.Dockerfile" ] || { echo "images: no images/$n.Dockerfile" >&2; exit 1; }
done

# ---- which engine works here
engine=
why=
for e in ${AMBIT_IMAGE_ENGINE:-podman buildah}; do
    if ! command -v "$e" >/dev/null; then
        why+="${why:+; }$e not installed"
        continue
    fi
    if ! out=$("$e" info 2>&1 >/dev/null); then
        why+="${why:+; }$e info failed: $(tail -1 <<<"$out")"
        continue
    fi
    engine=$e
    break
done
if [ -z "$engine" ]; then
    echo "images: SKIPPED — no working container engine ($why)."
    echo "images: to build images: apt-get install podman buildah debootstrap (see images/README.md)"
    exit 0
fi

case $engine in
buildah)
    isolation=${AMBIT_IMAGE_ISOLATION:-chroot}
    build=(buildah bud --isolation="$isolation")
    ;;
*)
    isolation=${AMBIT_IMAGE_ISOLATION:-oci}
    build=(podman build --isolation="$isolation")
    ;;
esac
# host network for RUN steps: apt reaches the mirror like the host does, and no bridge, veth or
# firewall rules are created on the machine
build+=(--network=host --layers)

mkdir -p "$outdir/logs"
t_all=$SECONDS

if [ "$base" = "$LOCAL_BASE" ]; then
    images/base.sh "$engine" "$base" || exit 1
fi

# can the engine run a build step here at all? (cached after the first time)
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'FROM %s\nRUN true\n' "$base" >"$probe/Containerfile"
if ! nice -n 10 "${build[@]}" -f "$probe/Containerfile" -t localhost/ambit/build-probe:latest \
    "$probe" >"$outdir/logs/probe.log" 2>&1; then
    echo "images: SKIPPED — $engine is installed but cannot run a build step here:"
    tail -3 "$outdir/logs/probe.log" | sed 's/^/images:   /'
    exit 0
fi

revision=$(git describe --always --dirty 2>/dev/null || echo unknown)
summary=()
for n in "${names[@]}"; do
    ref=$registry/$repo/$n:$tag
    log=$outdir/logs/$n.log
    echo "images: building $ref with $engine (isolation $isolation, log $log)"
    t0=$SECONDS
    if ! nice -n 10 "${build[@]}" --build-arg BASE="$base" --build-arg VERSION="$tag" \
        --build-arg REVISION="$revision" -f "images/$n.Dockerfile" -t "$ref" . >"$log" 2>&1; then
        tail -25 "$log" | sed 's/^/images:   /'
        echo "images: building $ref FAILED (log $log)" >&2
        exit 1
    fi
    size=$("$engine" images --format '{{.Size}}' "$ref" 2>/dev/null | head -1)
    line=$(printf '%-40s %4d s  %s' "$ref" $((SECONDS - t0)) "${size:-?}")
    if [ $save -eq 1 ]; then
        archive=$outdir/$n-$tag.tar
        rm -f "$archive"
        case $engine in
        buildah) buildah push --quiet "$ref" "docker-archive:$archive:$ref" >/dev/null ;;
        *) podman save --quiet --format docker-archive -o "$archive" "$ref" ;;
        esac || { echo "images: saving $ref to $archive FAILED" >&2; exit 1; }
        line+="  $archive"
    fi
    summary+=("$line")
done
echo "images: done in $((SECONDS - t_all)) s:"
printf 'images:   %s\n' "${summary[@]}"
