#!/usr/bin/env bash
# test_bookinfo.sh — the sample apps behave like Bookinfo (on loopback addresses 127.0.0.1x).
set -u
cd "$(dirname "$0")"
. ../lib/testlib.sh
t_begin bookinfo
pids=()
start() { # <addr> <role> [env...]
    local addr=$1 role=$2
    shift 2
    env BIND_ADDR="$addr" DETAILS_HOSTNAME=127.0.0.21 REVIEWS_HOSTNAME=127.0.0.22 \
        RATINGS_HOSTNAME=127.0.0.23 "$@" ./bookinfo.py "$role" 2>>"$T_LOG" &
    pids+=($!)
}
cleanup() { kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; }
trap cleanup EXIT
start 127.0.0.21 details
start 127.0.0.22 reviews SERVICE_VERSION=v2 POD_NAME=reviews-v2-abc
start 127.0.0.23 ratings
start 127.0.0.20 productpage
t_wait_for 10 curl -sf 127.0.0.20:9080/health
t_wait_for 10 curl -sf 127.0.0.23:9080/health

page=$(curl -s 127.0.0.20:9080/productpage)
t_match "productpage renders details" "William Shakespeare" "$page"
t_match "reviews v2 shows black stars" 'color="black">&#9733;' "$page"
t_match "reviews pod is named" "reviews-v2-abc" "$page"
t_eq "details JSON" "1595" "$(curl -s 127.0.0.21:9080/details/0 | python3 -c 'import json,sys; print(json.load(sys.stdin)["year"])')"
t_eq "unknown path is 404" "404" "$(curl -s -o /dev/null -w '%{http_code}' 127.0.0.20:9080/nope)"

# login sets end-user on backend calls: ratings sees it through reviews
code=$(curl -s -c "$T_DIR/cj" -d username=jason -o /dev/null -w '%{http_code}' 127.0.0.20:9080/login)
t_eq "login redirects" "302" "$code"
t_match "signed in as jason" "Signed in as jason" "$(curl -s -b "$T_DIR/cj" 127.0.0.20:9080/productpage)"

# ratings down -> reviews degrade; reviews down -> productpage error text
kill "${pids[2]}"
wait "${pids[2]}" 2>/dev/null
t_match "ratings down is reported" "Ratings service is currently unavailable" \
    "$(curl -s 127.0.0.20:9080/productpage)"
kill "${pids[1]}"
wait "${pids[1]}" 2>/dev/null
t_match "reviews down is reported" "Error fetching product reviews" \
    "$(curl -s 127.0.0.20:9080/productpage)"
t_end
