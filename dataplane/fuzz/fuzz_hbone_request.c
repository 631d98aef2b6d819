/*
 * libFuzzer target: arbitrary HTTP/2 bytes (what a peer sends after the TLS layer) into an
 * HBONE server connection — the nghttp2 session, our frame callbacks, CONNECT checks,
 * authority parsing, flood limits and the splice start — over a socketpair, driven by a
 * real dp_loop. The client preface is prepended when the input lacks it, so corpus files
 * can hold frames only. Upstreams are socketpairs (authority port 1 = connect failure, port
 * 2 = policy deny). Small limits make the caps reachable.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hbone.h"
#include "loop.h"

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct ctx {
    int ups[16];
    unsigned n_ups;
    bool conn_done;
    unsigned streams_done;
};

static uint16_t target_port(const struct dp_hbone_request *req)
{
    if (req->target.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&req->target)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&req->target)->sin6_port);
}

static int op_check(void *arg, struct dp_hbone_request *req)
{
    (void)arg;
    return target_port(req) == 3 ? -1 : 0;
}

static int op_authorize(void *arg, struct dp_hbone_request *req)
{
    (void)arg;
    /* the request handed to the callbacks must be consistent */
    if (req->authority == NULL || req->peer_id == NULL)
        __builtin_trap();
    return target_port(req) == 2 ? -1 : 0;
}

static int op_connect(void *arg, struct dp_hbone_request *req)
{
    struct ctx *c = arg;
    int sv[2];
    if (target_port(req) == 1 || c->n_ups >= 16)
        return -ECONNREFUSED;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
        return -errno;
    c->ups[c->n_ups++] = sv[1];
    return sv[0];
}

static void op_stream_done(void *arg, struct dp_hbone_request *req, const struct dp_hbs_stats *st)
{
    struct ctx *c = arg;
    (void)req;
    if (st->response_flags == NULL || strlen(st->error) >= sizeof(st->error))
        __builtin_trap();
    c->streams_done++;
}

static void op_conn_done(void *arg, const char *peer, const char *error)
{
    struct ctx *c = arg;
    (void)peer;
    (void)error;
    if (c->conn_done)
        __builtin_trap(); /* exactly once */
    c->conn_done = true;
}

static const struct dp_hbone_server_ops ops = {
        .check_authority = op_check,
        .authorize = op_authorize,
        .connect = op_connect,
        .on_stream_done = op_stream_done,
        .on_conn_done = op_conn_done,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dp_loop *loop = NULL;
    struct dp_hbone_limits lim;
    struct ctx c = {0};
    struct hbc *hbc = NULL;
    int sv[2];
    char sink[16384];
    size_t off = 0;
    bool pre = size >= sizeof(preface) - 1 && memcmp(data, preface, sizeof(preface) - 1) == 0;

    if (size > 1 << 20)
        return 0;
    if (dp_loop_new(&loop) < 0)
        return 0;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0) {
        dp_loop_free(loop);
        return 0;
    }
    dp_hbone_limits_default(&lim);
    lim.max_streams = 8;
    lim.max_header_list = 2048;
    lim.max_settings_per_s = 10;
    lim.max_rst_per_s = 10;
    lim.stream_window = 65535;
    lim.conn_window = 1 << 20;
    lim.splice_buf = 16384;
    if (dp_hbone_accept_insecure(loop, sv[0], "spiffe://cluster.local/ns/fuzz/sa/fuzz", &lim, &ops,
                                 &c, &hbc) < 0) {
        close(sv[1]);
        dp_loop_free(loop);
        return 0;
    }
    if (!pre && write(sv[1], preface, sizeof(preface) - 1) < 0)
        goto out;
    for (int round = 0; round < 400 && !c.conn_done; round++) {
        if (off < size) {
            ssize_t n = write(sv[1], data + off, size - off);
            if (n > 0)
                off += (size_t)n;
            if (off == size)
                shutdown(sv[1], SHUT_WR);
        }
        /* play the peer and the upstreams: swallow what the server sends */
        while (read(sv[1], sink, sizeof(sink)) > 0)
            ;
        for (unsigned i = 0; i < c.n_ups; i++)
            while (read(c.ups[i], sink, sizeof(sink)) > 0)
                ;
        dp_loop_run_once(loop, 0);
    }
    if (size == 0)
        shutdown(sv[1], SHUT_WR);
out:
    if (!c.conn_done)
        dp_hbc_abort(hbc, "fuzz end");
    for (int round = 0; round < 50 && !c.conn_done; round++)
        dp_loop_run_once(loop, 0);
    if (!c.conn_done)
        __builtin_trap(); /* an aborted connection must finish */
    for (unsigned i = 0; i < c.n_ups; i++)
        close(c.ups[i]);
    close(sv[1]);
    dp_loop_free(loop);
    return 0;
}
