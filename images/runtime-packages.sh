#!/bin/sh
# images/runtime-packages.sh <binary>... — print the Debian packages (one per line, sorted) that
# ship the shared libraries the binaries load, so a runtime stage installs exactly those. Runs in
# the build stage of images/*.Dockerfile; fails if a library is not found or not from a package.
set -eu
ldd_out=$(mktemp)
pkgs=$(mktemp)
trap 'rm -f "$ldd_out" "$pkgs"' EXIT
for bin in "$@"; do
    ldd "$bin" >"$ldd_out"
    if grep -q 'not found' "$ldd_out"; then
        echo "runtime-packages: $bin: missing libraries:" >&2
        grep 'not found' "$ldd_out" >&2
        exit 1
    fi
    # "libfoo.so.1 => /lib/x86_64-linux-gnu/libfoo.so.1 (0x...)": dpkg may list the file under
    # /usr/lib instead of /lib (merged /usr), so ask by base name and keep the exact match
    for lib in $(awk '$2 == "=>" && $3 ~ /^\// { print $3 }' "$ldd_out"); do
        name=${lib##*/}
        pkg=$(dpkg -S "*/$name" 2>/dev/null | awk -F': ' -v n="$name" '
            { p = $2; sub(/.*\//, "", p) } p == n { sub(/:.*/, "", $1); print $1; exit }')
        if [ -z "$pkg" ]; then
            echo "runtime-packages: $bin: no package ships $lib" >&2
            exit 1
        fi
        echo "$pkg" >>"$pkgs"
    done
done
sort -u "$pkgs"
