/*
 * relay.h — byte relay between two connected, non-blocking stream sockets on one loop
 * (plaintext passthrough on 15001 and the inbound 15006 path; HBONE streams are spliced by
 * dataplane/hbone).
 *
 * Half-close is propagated: EOF read on one side becomes shutdown(SHUT_WR) on the other once
 * everything read has been written. A read/write error on either side ends the relay; the
 * other side is then closed with RST (SO_LINGER 0) so the peer sees the failure.
 *
 * Buffers are allocated only while data is in flight, so an idle relay costs the struct only.
 */
#ifndef NA_RELAY_H
#define NA_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "loop.h"

struct na_relay;

/** Called once, from the loop, when both directions are finished (or failed). `err` is 0 or
 *  -errno of the first failure. Bytes: a_to_b = read from a and written to b. The relay may be
 *  freed from inside this callback (it is called from a deferred stage). */
typedef void na_relay_done_cb(struct na_relay *r, int err, uint64_t a_to_b, uint64_t b_to_a,
                              void *arg);

/** Start relaying between fd_a and fd_b (both connected, non-blocking). Steals both fds on
 *  success (closed by na_relay_free). 0 or -ENOMEM / -errno from the loop. */
int na_relay_new(struct dp_loop *loop, int fd_a, int fd_b, na_relay_done_cb *cb, void *arg,
                 struct na_relay **ret_r);
/** Abort (RST both sides if still open) and free; accepts NULL. Never calls the callback. */
void na_relay_free(struct na_relay *r);
/** Bytes so far (a->b, b->a). */
void na_relay_bytes(const struct na_relay *r, uint64_t *ret_a_to_b, uint64_t *ret_b_to_a);

/** Close a socket with RST (SO_LINGER 0). Accepts -1. */
void na_close_rst(int fd);

/**
 * Refuse an accepted connection the way ztunnel's refusals look to clients: wait until the peer
 * has sent something (or `timeout_ms` passed), then close with RST. A client that sends its
 * request right after connecting (curl, HTTP) then reliably sees "connection reset by peer"
 * (curl exit 56), instead of racing the RST against its own connect (curl exit 7). Steals fd; if
 * the loop cannot watch it, it is reset at once.
 */
void na_close_rst_after_data(struct dp_loop *loop, int fd, unsigned timeout_ms);

#endif
