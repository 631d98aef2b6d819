/*
 * test_hbone.c — HBONE client <-> server over loopback TCP with real mTLS, plus a raw
 * nghttp2 client against the server for requests our client never sends (non-CONNECT).
 * Upstreams are socketpairs handed out by the connect op (the test holds the far end), or a
 * real non-blocking connect to a closed loopback port for the 503 case.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <nghttp2/nghttp2.h>

#include <cmocka.h>

#include "hbone.h"
#include "loop.h"
#include "tls_fixture.h"

#define ID_A "spiffe://cluster.local/ns/default/sa/a"
#define ID_B "spiffe://cluster.local/ns/default/sa/b"

#define DENY_PORT  4401       /* authorize() refuses this target port */
#define FAIL_PORT  4503       /* connect() dials a closed port */
#define OTHER_HOST "10.9.9.9" /* check_authority() refuses this target */
#define HANG_PORT  4999       /* connect() dials a listener whose backlog is full */

struct up {
    int far; /* test's end of the upstream socketpair */
};

struct srv {
    struct dp_loop *loop;
    int lfd;
    struct dp_io lio;
    struct sockaddr_in addr;
    struct dp_identity *id;
    struct dp_hbone_limits lim;
    bool insecure;
    unsigned accepts;
    unsigned conns_done;
    unsigned streams_done;
    struct up ups[64];
    unsigned n_ups;
    int closed_port;
    int hang_port;
    struct dp_hbs_stats last;
    char last_authority[64];
    char last_peer[DP_SPIFFE_MAX];
    char last_baggage[128];
    char last_tp[64];
    char last_fwd[128];
    struct hbc *last_hbc;
    char last_st_peer[DP_SPIFFE_MAX];
};

static struct dp_ca *ca;
static struct dp_identity *id_a, *id_b;
static struct dp_loop *loop;
static struct srv srv;

/* ------------------------------------------------------------------ server side ops */

static int op_check_authority(void *arg, struct dp_hbone_request *req)
{
    (void)arg;
    const struct sockaddr_in *t = (const struct sockaddr_in *)&req->target;
    char ip[INET_ADDRSTRLEN];
    if (t->sin_family != AF_INET)
        return 0;
    inet_ntop(AF_INET, &t->sin_addr, ip, sizeof(ip));
    return strcmp(ip, OTHER_HOST) == 0 ? -1 : 0;
}

static int op_authorize(void *arg, struct dp_hbone_request *req)
{
    (void)arg;
    const struct sockaddr_in *t = (const struct sockaddr_in *)&req->target;
    return ntohs(t->sin_port) == DENY_PORT ? -1 : 0;
}

static int op_connect(void *arg, struct dp_hbone_request *req)
{
    struct srv *s = arg;
    const struct sockaddr_in *t = (const struct sockaddr_in *)&req->target;
    int sv[2];

    snprintf(s->last_authority, sizeof(s->last_authority), "%s", req->authority);
    snprintf(s->last_peer, sizeof(s->last_peer), "%s", req->peer_id);
    snprintf(s->last_baggage, sizeof(s->last_baggage), "%s", req->baggage ? req->baggage : "");
    snprintf(s->last_tp, sizeof(s->last_tp), "%s", req->traceparent ? req->traceparent : "");
    snprintf(s->last_fwd, sizeof(s->last_fwd), "%s", req->forwarded ? req->forwarded : "");
    if (ntohs(t->sin_port) == FAIL_PORT || ntohs(t->sin_port) == HANG_PORT) {
        int port = ntohs(t->sin_port) == FAIL_PORT ? s->closed_port : s->hang_port;
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
            int r = -errno;
            close(fd);
            return r;
        }
        return fd;
    }
    req->response_baggage = "k8s.namespace.name=default,k8s.deployment.name=b";
    if (s->n_ups >= DP_ARRAY_SIZE(s->ups))
        return -EMFILE;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
        return -errno;
    s->ups[s->n_ups++].far = sv[1];
    return sv[0];
}

static void op_stream_done(void *arg, struct dp_hbone_request *req, const struct dp_hbs_stats *st)
{
    struct srv *s = arg;
    (void)req;
    s->streams_done++;
    s->last = *st;
    snprintf(s->last_st_peer, sizeof(s->last_st_peer), "%s", st->peer_id);
    s->last.peer_id = s->last_st_peer; /* borrowed pointer: keep a copy */
}

static void op_conn_done(void *arg, const char *peer, const char *error)
{
    struct srv *s = arg;
    (void)peer;
    (void)error;
    s->conns_done++;
}

static const struct dp_hbone_server_ops ops = {
        .check_authority = op_check_authority,
        .authorize = op_authorize,
        .connect = op_connect,
        .on_stream_done = op_stream_done,
        .on_conn_done = op_conn_done,
};

static void on_listen(struct dp_loop *l, int fd, unsigned events, void *arg)
{
    struct srv *s = arg;
    int c;
    (void)events;

    while ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        s->accepts++;
        if (s->insecure)
            assert_int_equal(dp_hbone_accept_insecure(l, c, ID_A, &s->lim, &ops, s, &s->last_hbc),
                             0);
        else
            assert_int_equal(dp_hbone_accept(l, c, s->id, &s->lim, &ops, s, &s->last_hbc), 0);
    }
}

static int listen_lo(struct sockaddr_in *ret)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t sl = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 64), 0);
    getsockname(fd, (struct sockaddr *)&a, &sl);
    *ret = a;
    return fd;
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(dp_loop_new(&loop), 0);
    memset(&srv, 0, sizeof(srv));
    srv.loop = loop;
    srv.id = id_b;
    dp_hbone_limits_default(&srv.lim);
    srv.lfd = listen_lo(&srv.addr);
    dp_io_init(&srv.lio, srv.lfd, on_listen, &srv);
    assert_int_equal(dp_loop_add_io(loop, &srv.lio, DP_EV_READ), 0);
    /* a port with nothing listening: bind, read the port, close */
    struct sockaddr_in tmp;
    int t = listen_lo(&tmp);
    srv.closed_port = ntohs(tmp.sin_port);
    close(t);
    return 0;
}

static void pump(int ms)
{
    uint64_t end = dp_now_ms() + (uint64_t)ms;
    while (dp_now_ms() < end)
        dp_loop_run_once(loop, 5);
}

#define PUMP_UNTIL(cond, ms)                                                                       \
    do {                                                                                           \
        uint64_t end_ = dp_now_ms() + (ms);                                                        \
        while (!(cond) && dp_now_ms() < end_)                                                      \
            dp_loop_run_once(loop, 5);                                                             \
    } while (0)

static int teardown(void **state)
{
    (void)state;
    pump(20);
    for (unsigned i = 0; i < srv.n_ups; i++)
        if (srv.ups[i].far >= 0)
            close(srv.ups[i].far);
    dp_loop_del_io(loop, &srv.lio);
    close(srv.lfd);
    /* let server connections notice and free */
    pump(50);
    dp_loop_free(loop);
    loop = NULL;
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    if (dp_ca_new_root("ambit test", 30, &ca) < 0)
        return -1;
    id_a = fx_identity(ca, ID_A, -60, 3600);
    id_b = fx_identity(ca, ID_B, -60, 3600);
    return id_a && id_b ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    dp_identity_unref(id_a);
    dp_identity_unref(id_b);
    dp_ca_free(ca);
    return 0;
}

/* ------------------------------------------------------------------ client side helpers */

struct tun {
    int app; /* test's end of the app socketpair */
    struct hbs *s;
    int status;
    bool responded;
    bool done;
    char error[192];
    char peer[DP_SPIFFE_MAX];
    struct dp_hbs_stats st;
};

static void on_resp(struct hbs *s, int status, const char *error, void *arg)
{
    struct tun *t = arg;
    (void)s;
    t->responded = true;
    t->status = status;
    snprintf(t->error, sizeof(t->error), "%s", error);
}

static void on_done(struct hbs *s, const struct dp_hbs_stats *st, void *arg)
{
    struct tun *t = arg;
    (void)s;
    t->done = true;
    t->st = *st;
    snprintf(t->peer, sizeof(t->peer), "%s", st->peer_id);
    t->st.peer_id = t->peer; /* borrowed pointer: keep a copy */
}

static void open_tun(struct dp_hbone_pool *pool, struct tun *t, const char *authority,
                     const char *want_san)
{
    const char *sans[] = {want_san ? want_san : ID_B};
    struct dp_hbone_target tg = {
            .src_id = id_a,
            .dst = (struct sockaddr *)&srv.addr,
            .dst_len = sizeof(srv.addr),
            .sans = sans,
            .n_sans = 1,
    };
    struct dp_hbone_connect req = {
            .authority = authority,
            .baggage = "k8s.namespace.name=default,k8s.deployment.name=a",
            .forwarded = "for=\"10.0.0.1:5555\"",
    };
    int sv[2];

    memset(t, 0, sizeof(*t));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    t->app = sv[1];
    assert_int_equal(dp_hbone_open(pool, &tg, &req, sv[0], on_resp, on_done, t, &t->s), 0);
}

/* write all of buf to fd while pumping the loop */
static void write_all(int fd, const void *buf, size_t len)
{
    size_t off = 0;
    uint64_t end = dp_now_ms() + 10000;
    while (off < len && dp_now_ms() < end) {
        ssize_t n = write(fd, (const char *)buf + off, len - off);
        if (n > 0)
            off += (size_t)n;
        else
            dp_loop_run_once(loop, 1);
    }
    assert_int_equal(off, len);
}

/* read exactly len bytes (or until EOF when len == 0 expected) while pumping */
static size_t read_n(int fd, void *buf, size_t len, bool *ret_eof)
{
    size_t off = 0;
    uint64_t end = dp_now_ms() + 10000;
    *ret_eof = false;
    while (off < len && dp_now_ms() < end) {
        ssize_t n = read(fd, (char *)buf + off, len - off);
        if (n > 0)
            off += (size_t)n;
        else if (n == 0) {
            *ret_eof = true;
            break;
        } else if (errno != EAGAIN)
            break;
        else
            dp_loop_run_once(loop, 1);
    }
    return off;
}

static bool wait_eof(int fd)
{
    char b[64];
    bool eof = false;
    uint64_t end = dp_now_ms() + 5000;
    while (!eof && dp_now_ms() < end) {
        ssize_t n = read(fd, b, sizeof(b));
        if (n == 0 || (n < 0 && errno != EAGAIN))
            eof = true;
        else
            dp_loop_run_once(loop, 1);
    }
    return eof;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)((i * 7 + seed) ^ (i >> 9));
}

/* ------------------------------------------------------------------ tests */

struct raw {
    nghttp2_session *h2;
    int fd;
    int status;
    bool closed;
    uint32_t rst_code;
    bool goaway;
    char baggage[128];
};
static void raw_connect(struct raw *r);
static void raw_pump(struct raw *r);
static void raw_done(struct raw *r);

static void test_authority_parse(void **state)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    const char *err;
    (void)state;

    assert_int_equal(dp_hbone_parse_authority("10.1.2.3:8080", 13, &ss, &sl, &err), 0);
    assert_int_equal(((struct sockaddr_in *)&ss)->sin_port, htons(8080));
    assert_int_equal(dp_hbone_parse_authority("[fd00::1]:443", 13, &ss, &sl, &err), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    static const char *bad[] = {"",
                                "10.1.2.3",
                                "10.1.2.3:",
                                "10.1.2.3:0",
                                "10.1.2.3:65536",
                                "10.1.2.3:08",
                                "host:80",
                                "[::1]80",
                                "[::1]:",
                                "::1:80",
                                "10.1.2:80",
                                "10.1.2.3:8a",
                                "[fe80::1%eth0]:80",
                                "10.1.2.3:80 ",
                                " 10.1.2.3:80"};
    for (size_t i = 0; i < DP_ARRAY_SIZE(bad); i++) {
        err = NULL;
        assert_int_equal(dp_hbone_parse_authority(bad[i], strlen(bad[i]), &ss, &sl, &err), -EINVAL);
        assert_non_null(err);
    }
    char tp[56];
    dp_hbone_traceparent(tp);
    assert_int_equal(strlen(tp), 55);
    assert_memory_equal(tp, "00-", 3);
    assert_int_equal(tp[35], '-');
    assert_string_equal(tp + 52, "-00");
}

static void test_connect_roundtrip(void **state)
{
    struct dp_hbone_pool *pool = NULL;
    struct tun t;
    const size_t big = 3 * 1024 * 1024 + 123;
    unsigned char *out = malloc(big), *in = malloc(big);
    bool eof;
    (void)state;

    assert_int_equal(dp_hbone_pool_new(loop, NULL, &pool), 0);
    open_tun(pool, &t, "127.0.0.1:8080", NULL);
    PUMP_UNTIL(t.responded, 5000);
    assert_true(t.responded);
    assert_int_equal(t.status, 200);
    assert_int_equal(srv.n_ups, 1);
    assert_string_equal(srv.last_authority, "127.0.0.1:8080");
    assert_string_equal(srv.last_peer, ID_A);
    assert_string_equal(srv.last_baggage, "k8s.namespace.name=default,k8s.deployment.name=a");
    assert_string_equal(srv.last_fwd, "for=\"10.0.0.1:5555\"");
    assert_int_equal(strlen(srv.last_tp), 55);
    int up = srv.ups[0].far;

    /* client -> upstream, larger than the stream window to exercise flow control */
    fill(out, big, 1);
    write_all(t.app, out, 1000);
    assert_int_equal(read_n(up, in, 1000, &eof), 1000);
    assert_memory_equal(in, out, 1000);
    /* upstream -> client */
    write_all(up, "pong", 4);
    assert_int_equal(read_n(t.app, in, 4, &eof), 4);
    assert_memory_equal(in, "pong", 4);

    /* bulk: write everything from one side while reading on the other */
    size_t wo = 0, ro = 0;
    uint64_t end = dp_now_ms() + 20000;
    while (ro < big && dp_now_ms() < end) {
        if (wo < big) {
            ssize_t n = write(t.app, out + wo, big - wo);
            if (n > 0)
                wo += (size_t)n;
        }
        ssize_t n = read(up, in + ro, big - ro);
        if (n > 0)
            ro += (size_t)n;
        dp_loop_run_once(loop, 0);
    }
    assert_int_equal(ro, big);
    assert_memory_equal(in, out, big);

    /* half-close client -> upstream: upstream sees EOF, can still answer */
    shutdown(t.app, SHUT_WR);
    assert_true(wait_eof(up));
    write_all(up, "late reply", 10);
    assert_int_equal(read_n(t.app, in, 10, &eof), 10);
    assert_memory_equal(in, "late reply", 10);
    assert_false(t.done);
    /* and the other direction */
    shutdown(up, SHUT_WR);
    assert_int_equal(read_n(t.app, in, 1, &eof), 0);
    assert_true(eof);
    PUMP_UNTIL(t.done && srv.streams_done == 1, 5000);
    assert_true(t.done);
    assert_int_equal(t.st.status, 200);
    assert_string_equal(t.st.response_flags, "-");
    assert_string_equal(t.st.error, "");
    assert_string_equal(t.st.peer_id, ID_B);
    assert_int_equal(t.st.bytes_in, 1000 + big);
    assert_int_equal(t.st.bytes_out, 4 + 10);
    assert_int_equal(srv.streams_done, 1);
    assert_int_equal(srv.last.bytes_out, 1000 + big);
    assert_int_equal(srv.last.bytes_in, 4 + 10);
    assert_string_equal(srv.last.peer_id, ID_A);

    close(t.app);
    dp_hbone_pool_free(pool);
    free(out);
    free(in);
}

/* A reader that stops reading must stop the writer: bounded buffering end to end. */
static void test_backpressure(void **state)
{
    struct dp_hbone_pool *pool = NULL;
    struct tun t;
    const size_t cap = 64u << 20;
    unsigned char *buf = calloc(1, 1 << 16);
    size_t written = 0, got = 0;
    bool eof;
    (void)state;

    assert_int_equal(dp_hbone_pool_new(loop, NULL, &pool), 0);
    open_tun(pool, &t, "127.0.0.1:8080", NULL);
    PUMP_UNTIL(t.responded, 5000);
    assert_int_equal(t.status, 200);
    int up = srv.ups[0].far;
    /* write without reading on the far side until the tunnel pushes back for 300 ms */
    uint64_t last_progress = dp_now_ms(), end = dp_now_ms() + 20000;
    while (written < cap && dp_now_ms() - last_progress < 300 && dp_now_ms() < end) {
        ssize_t n = write(t.app, buf, 1 << 16);
        if (n > 0) {
            written += (size_t)n;
            last_progress = dp_now_ms();
        }
        dp_loop_run_once(loop, 1);
    }
    /* socket buffers + 256 KiB splice buffer + 4 MiB stream window + TLS/h2 buffers */
    if (written >= 24u << 20)
        fail_msg("no back-pressure: %zu bytes accepted while nobody reads", written);
    assert_true(written > 0);
    /* now drain: everything written arrives */
    shutdown(t.app, SHUT_WR);
    uint64_t end2 = dp_now_ms() + 20000;
    while (dp_now_ms() < end2) {
        ssize_t n = read(up, buf, 1 << 16);
        if (n > 0)
            got += (size_t)n;
        else if (n == 0)
            break;
        else
            dp_loop_run_once(loop, 1);
    }
    assert_int_equal(got, written);
    (void)eof;
    close(t.app);
    dp_hbone_pool_free(pool);
    free(buf);
}

static void expect_refused(const char *authority, int want_status, const char *want_flags,
                           const char *want_err_sub)
{
    struct dp_hbone_pool *pool = NULL;
    struct tun t;

    assert_int_equal(dp_hbone_pool_new(loop, NULL, &pool), 0);
    open_tun(pool, &t, authority, NULL);
    PUMP_UNTIL(t.done && srv.streams_done > 0, 5000);
    assert_true(t.responded);
    assert_int_equal(t.status, want_status);
    assert_true(t.done);
    assert_int_equal(t.st.status, want_status);
    assert_string_equal(t.st.response_flags, want_flags);
    assert_int_equal(srv.last.status, want_status);
    assert_string_equal(srv.last.response_flags, want_flags);
    if (strstr(srv.last.error, want_err_sub) == NULL)
        fail_msg("server error '%s' lacks '%s'", srv.last.error, want_err_sub);
    /* the app socket is closed (reset) */
    assert_true(wait_eof(t.app));
    close(t.app);
    /* the connection survives a refused stream */
    unsigned conns;
    dp_hbone_pool_counts(pool, &conns, NULL);
    assert_int_equal(conns, 1);
    dp_hbone_pool_free(pool);
}

static void test_policy_deny_401(void **state)
{
    (void)state;
    expect_refused("127.0.0.1:4401", 401, "DENY", "rejected by policy");
}

static void test_upstream_fail_503(void **state)
{
    (void)state;
    expect_refused("127.0.0.1:4503", 503, "CONNECT", "upstream connect");
}

static void test_bad_authority_400(void **state)
{
    (void)state;
    expect_refused("not-an-ip:80", 400, "CONNECT", "bad :authority");
    expect_refused(OTHER_HOST ":80", 400, "CONNECT", "authority not served here");
    expect_refused("127.0.0.1:99999", 400, "CONNECT", "bad :authority");
}

static void test_wrong_san_tls_failure(void **state)
{
    struct dp_hbone_pool *pool = NULL;
    struct tun t;
    (void)state;

    assert_int_equal(dp_hbone_pool_new(loop, NULL, &pool), 0);
    open_tun(pool, &t, "127.0.0.1:80", "spiffe://cluster.local/ns/default/sa/zzz");
    PUMP_UNTIL(t.done, 5000);
    assert_true(t.done);
    assert_int_equal(t.status, 0);
    assert_string_equal(t.st.response_flags, "TLS_FAILURE");
    assert_string_equal(t.st.error,
                        "SAN mismatch: got " ID_B " want spiffe://cluster.local/ns/default/sa/zzz");
    assert_true(wait_eof(t.app));
    close(t.app);
    unsigned conns;
    dp_hbone_pool_counts(pool, &conns, NULL);
    assert_int_equal(conns, 0);
    dp_hbone_pool_free(pool);
}

static void test_client_cert_expired(void **state)
{
    struct dp_hbone_pool *pool = NULL;
    struct dp_identity *old = fx_identity(ca, ID_A, -7200, -3600);
    struct tun t;
    const char *sans[] = {ID_B};
    struct dp_hbone_target tg = {.src_id = old,
                                 .dst = (struct sockaddr *)&srv.addr,
                                 .dst_len = sizeof(srv.addr),
                                 .sans = sans,
                                 .n_sans = 1};
    struct dp_hbone_connect req = {.authority = "127.0.0.1:80"};
    int sv[2];
    (void)state;

    assert_int_equal(dp_hbone_pool_new(loop, NULL, &pool), 0);
    memset(&t, 0, sizeof(t));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    t.app = sv[1];
    assert_int_equal(dp_hbone_open(pool, &tg, &req, sv[0], on_resp, on_done, &t, &t.s), 0);
    PUMP_UNTIL(t.done && srv.conns_done == 1, 5000);
    assert_true(t.done);
    assert_int_equal(t.status, 0);
    assert_string_equal(t.st.response_flags, "TLS_FAILURE");
    if (strstr(t.st.error, "certificate expired") == NULL)
        fail_msg("client error '%s'", t.st.error);
    assert_int_equal(srv.n_ups, 0);
    assert_int_equal(srv.streams_done, 0);
    close(t.app);
    dp_hbone_pool_free(pool);
    dp_identity_unref(old);
}

static void test_response_timeout(void **state)
{
    struct dp_hbone_pool *pool = NULL;
    struct dp_hbone_limits lim;
    struct sockaddr_in ha;
    struct tun t;
    int hl, fill[4];
    (void)state;

    /* a listener with a full backlog: connects to it stay in progress */
    hl = listen_lo(&ha);
    listen(hl, 0);
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&ha, sizeof(ha));
    }
    srv.hang_port = ntohs(ha.sin_port);
    dp_hbone_limits_default(&lim);
    lim.handshake_timeout_ms = 100;
    lim.connect_timeout_ms = 100;
    assert_int_equal(dp_hbone_pool_new(loop, &lim, &pool), 0);
    uint64_t t0 = dp_now_ms();
    open_tun(pool, &t, "127.0.0.1:4999", NULL);
    PUMP_UNTIL(t.done, 5000);
    assert_true(t.done);
    assert_true(t.responded);
    assert_int_equal(t.status, 0);
    assert_string_equal(t.st.response_flags, "CONNECT");
    assert_string_equal(t.st.error, "no response to CONNECT in time");
    assert_true(dp_now_ms() - t0 >= 190);
    assert_true(dp_now_ms() - t0 < 3000);
    /* the connection itself is fine and reusable */
    unsigned conns;
    dp_hbone_pool_counts(pool, &conns, NULL);
    assert_int_equal(conns, 1);
    close(t.app);
    dp_hbone_pool_free(pool);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(hl);
}

static void test_connect_refused(void **state)
{
    struct dp_hbone_pool *pool = NULL;
    struct tun t;
    const char *sans[] = {ID_B};
    struct sockaddr_in dead = {.sin_family = AF_INET, .sin_port = htons((uint16_t)srv.closed_port)};
    dead.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct dp_hbone_target tg = {.src_id = id_a,
                                 .dst = (struct sockaddr *)&dead,
                                 .dst_len = sizeof(dead),
                                 .sans = sans,
                                 .n_sans = 1};
    struct dp_hbone_connect req = {.authority = "127.0.0.1:80"};
    int sv[2];
    (void)state;

    assert_int_equal(dp_hbone_pool_new(loop, NULL, &pool), 0);
    memset(&t, 0, sizeof(t));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    t.app = sv[1];
    assert_int_equal(dp_hbone_open(pool, &tg, &req, sv[0], on_resp, on_done, &t, &t.s), 0);
    assert_false(t.done); /* never from inside dp_hbone_open */
    PUMP_UNTIL(t.done, 5000);
    assert_true(t.done);
    assert_string_equal(t.st.response_flags, "CONNECT");
    assert_non_null(strstr(t.st.error, "connect: Connection refused"));
    close(t.app);
    /* invalid requests are refused synchronously */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    req.authority = "1.2.3.4:80\r\nx: y";
    assert_int_equal(dp_hbone_open(pool, &tg, &req, sv[0], on_resp, on_done, &t, NULL), -EINVAL);
    close(sv[1]);
    dp_hbone_pool_free(pool);
}

static void test_many_streams_and_reuse(void **state)
{
    struct dp_hbone_pool *pool = NULL;
    enum { N = 24 };
    struct tun *t = calloc(N, sizeof(*t));
    unsigned conns, streams;
    char buf[32], exp[32];
    bool eof;
    (void)state;

    assert_int_equal(dp_hbone_pool_new(loop, NULL, &pool), 0);
    for (int i = 0; i < N; i++)
        open_tun(pool, &t[i], "127.0.0.1:9000", NULL);
    dp_hbone_pool_counts(pool, &conns, &streams);
    assert_int_equal(conns, 1);
    assert_int_equal(streams, N);
    unsigned ok = 0;
    PUMP_UNTIL(srv.n_ups == N && t[N - 1].responded, 5000);
    assert_int_equal(srv.n_ups, N);
    for (int i = 0; i < N; i++)
        ok += t[i].status == 200;
    assert_int_equal(ok, N);
    assert_int_equal(srv.accepts, 1);
    /* each stream carries its own bytes; upstreams are in stream-open order on the server,
     * so identify them by content */
    for (int i = 0; i < N; i++) {
        snprintf(buf, sizeof(buf), "stream-%02d", i);
        write_all(t[i].app, buf, 9);
    }
    for (unsigned u = 0; u < srv.n_ups; u++) {
        assert_int_equal(read_n(srv.ups[u].far, buf, 9, &eof), 9);
        write_all(srv.ups[u].far, buf, 9); /* echo */
    }
    for (int i = 0; i < N; i++) {
        snprintf(exp, sizeof(exp), "stream-%02d", i);
        assert_int_equal(read_n(t[i].app, buf, 9, &eof), 9);
        assert_memory_equal(buf, exp, 9);
        close(t[i].app);
    }
    for (unsigned u = 0; u < srv.n_ups; u++) {
        close(srv.ups[u].far);
        srv.ups[u].far = -1;
    }
    PUMP_UNTIL(srv.streams_done == N && t[N - 1].done, 5000);
    assert_int_equal(srv.streams_done, N);
    for (int i = 0; i < N; i++)
        assert_true(t[i].done);
    dp_hbone_pool_counts(pool, &conns, &streams);
    assert_int_equal(conns, 1);
    assert_int_equal(streams, 0);

    /* reuse: the next tunnel rides the same connection */
    open_tun(pool, &t[0], "127.0.0.1:9001", NULL);
    PUMP_UNTIL(t[0].responded, 5000);
    assert_int_equal(t[0].status, 200);
    assert_int_equal(srv.accepts, 1);
    close(t[0].app);
    close(srv.ups[N].far);
    srv.ups[N].far = -1;
    PUMP_UNTIL(t[0].done, 5000);
    assert_true(t[0].done);
    assert_string_equal(t[0].st.error, "");
    dp_hbone_pool_free(pool);
    free(t);
}

/* A peer with a lower stream limit refuses the extra streams before its SETTINGS arrive:
 * those are retried on another connection instead of failing the app connection. */
static void test_refused_stream_retried(void **state)
{
    struct dp_hbone_pool *pool = NULL;
    enum { N = 3 };
    static struct tun t[N];
    (void)state;

    srv.lim.max_streams = 1;
    assert_int_equal(dp_hbone_pool_new(loop, NULL, &pool), 0);
    for (int i = 0; i < N; i++)
        open_tun(pool, &t[i], "127.0.0.1:9000", NULL);
    PUMP_UNTIL(t[0].responded && t[1].responded && t[2].responded, 5000);
    for (int i = 0; i < N; i++) {
        if (t[i].status != 200)
            fail_msg("stream %d: status %d error '%s'", i, t[i].status, t[i].error);
    }
    assert_true(srv.accepts >= 2);
    /* bytes flow on a retried stream */
    char buf[4];
    bool eof;
    write_all(t[2].app, "ping", 4);
    bool found = false;
    uint64_t end = dp_now_ms() + 5000;
    (void)eof;
    while (!found && dp_now_ms() < end) {
        for (unsigned u = 0; u < srv.n_ups && !found; u++)
            if (read(srv.ups[u].far, buf, 4) == 4 && memcmp(buf, "ping", 4) == 0)
                found = true;
        dp_loop_run_once(loop, 1);
    }
    assert_true(found);
    for (int i = 0; i < N; i++)
        close(t[i].app);
    for (unsigned u = 0; u < srv.n_ups; u++) {
        close(srv.ups[u].far);
        srv.ups[u].far = -1;
    }
    PUMP_UNTIL(t[0].done && t[1].done && t[2].done, 5000);
    for (int i = 0; i < N; i++)
        assert_true(t[i].done);
    dp_hbone_pool_free(pool);
}

static void test_stream_cap(void **state)
{
    struct dp_hbone_pool *pool = NULL;
    struct dp_hbone_limits lim;
    enum { N = 10 };
    static struct tun t[N];
    unsigned conns, streams;
    (void)state;

    dp_hbone_limits_default(&lim);
    lim.max_streams = 4;
    assert_int_equal(dp_hbone_pool_new(loop, &lim, &pool), 0);
    for (int i = 0; i < N; i++)
        open_tun(pool, &t[i], "127.0.0.1:9000", NULL);
    dp_hbone_pool_counts(pool, &conns, &streams);
    assert_int_equal(conns, 3);
    assert_int_equal(streams, N);
    PUMP_UNTIL(srv.n_ups == N && t[N - 1].responded && t[0].responded, 5000);
    for (int i = 0; i < N; i++)
        assert_int_equal(t[i].status, 200);
    assert_int_equal(srv.accepts, 3);
    for (int i = 0; i < N; i++)
        close(t[i].app);
    for (unsigned u = 0; u < srv.n_ups; u++) {
        close(srv.ups[u].far);
        srv.ups[u].far = -1;
    }
    PUMP_UNTIL(srv.streams_done == N && t[N - 1].done, 5000);
    assert_int_equal(srv.streams_done, N);
    dp_hbone_pool_free(pool);
}

static void test_idle_timeout(void **state)
{
    struct dp_hbone_pool *pool = NULL;
    struct dp_hbone_limits lim;
    struct tun t;
    unsigned conns;
    (void)state;

    dp_hbone_limits_default(&lim);
    lim.idle_timeout_ms = 100;
    assert_int_equal(dp_hbone_pool_new(loop, &lim, &pool), 0);
    open_tun(pool, &t, "127.0.0.1:9000", NULL);
    PUMP_UNTIL(t.responded, 5000);
    close(t.app);
    close(srv.ups[0].far);
    srv.ups[0].far = -1;
    PUMP_UNTIL(t.done, 5000);
    dp_hbone_pool_counts(pool, &conns, NULL);
    assert_int_equal(conns, 1);
    PUMP_UNTIL(srv.conns_done == 1, 3000);
    dp_hbone_pool_counts(pool, &conns, NULL);
    assert_int_equal(conns, 0);
    assert_int_equal(srv.conns_done, 1);
    dp_hbone_pool_free(pool);

    /* server side: a connection that never opens a stream is closed after 2 x idle */
    struct raw r;
    srv.lim.idle_timeout_ms = 100;
    raw_connect(&r);
    uint64_t t0 = dp_now_ms();
    while (!r.goaway && dp_now_ms() - t0 < 3000) {
        raw_pump(&r);
        dp_loop_run_once(loop, 5);
    }
    assert_true(r.goaway);
    assert_true(dp_now_ms() - t0 >= 150);
    PUMP_UNTIL(srv.conns_done == 2, 2000);
    assert_int_equal(srv.conns_done, 2);
    raw_done(&r);
}

static void test_renewed_identity_new_connection(void **state)
{
    struct dp_hbone_pool *pool = NULL;
    struct tun t1, t2;
    struct dp_identity *saved = id_a, *renewed = fx_identity(ca, ID_A, -60, 7200);
    (void)state;

    assert_int_equal(dp_hbone_pool_new(loop, NULL, &pool), 0);
    open_tun(pool, &t1, "127.0.0.1:9000", NULL);
    PUMP_UNTIL(t1.responded, 5000);
    id_a = renewed; /* open_tun presents id_a */
    open_tun(pool, &t2, "127.0.0.1:9000", NULL);
    id_a = saved;
    PUMP_UNTIL(t2.responded, 5000);
    assert_int_equal(t1.status, 200);
    assert_int_equal(t2.status, 200);
    assert_int_equal(srv.accepts, 2); /* the renewed certificate dials a fresh connection */
    close(t1.app);
    close(t2.app);
    for (unsigned u = 0; u < srv.n_ups; u++) {
        close(srv.ups[u].far);
        srv.ups[u].far = -1;
    }
    PUMP_UNTIL(t1.done && t2.done, 5000);
    dp_hbone_pool_free(pool);
    dp_identity_unref(renewed);
}

static void test_drain(void **state)
{
    struct dp_hbone_pool *pool = NULL;
    struct tun t1, t2, t3;
    unsigned conns;
    char buf[8];
    bool eof;
    (void)state;

    assert_int_equal(dp_hbone_pool_new(loop, NULL, &pool), 0);
    open_tun(pool, &t1, "127.0.0.1:9000", NULL);
    PUMP_UNTIL(t1.responded, 5000);
    /* server-side graceful drain: GOAWAY; the open stream keeps working */
    dp_hbc_drain(srv.last_hbc);
    pump(50);
    write_all(t1.app, "abc", 3);
    assert_int_equal(read_n(srv.ups[0].far, buf, 3, &eof), 3);
    /* new tunnels no longer ride the draining connection */
    open_tun(pool, &t2, "127.0.0.1:9000", NULL);
    PUMP_UNTIL(t2.responded, 5000);
    assert_int_equal(t2.status, 200);
    assert_int_equal(srv.accepts, 2);
    /* the drained connection closes once its stream ends */
    close(t1.app);
    close(srv.ups[0].far);
    srv.ups[0].far = -1;
    PUMP_UNTIL(t1.done && srv.conns_done == 1, 5000);
    assert_true(t1.done);
    assert_string_equal(t1.st.error, "");
    assert_int_equal(srv.conns_done, 1);

    /* client-side drain: the open stream finishes, new opens dial */
    dp_hbone_pool_drain(pool);
    dp_hbone_pool_counts(pool, &conns, NULL);
    assert_int_equal(conns, 0);
    write_all(t2.app, "xyz", 3);
    assert_int_equal(read_n(srv.ups[1].far, buf, 3, &eof), 3);
    open_tun(pool, &t3, "127.0.0.1:9000", NULL);
    PUMP_UNTIL(t3.responded, 5000);
    assert_int_equal(srv.accepts, 3);
    close(t2.app);
    close(t3.app);
    for (unsigned u = 1; u < srv.n_ups; u++) {
        close(srv.ups[u].far);
        srv.ups[u].far = -1;
    }
    PUMP_UNTIL(t2.done && t3.done && srv.conns_done == 2, 5000);
    assert_int_equal(srv.conns_done, 2); /* the client-drained connection went away */
    dp_hbone_pool_free(pool);
}

static void test_server_abort_resets_streams(void **state)
{
    struct dp_hbone_pool *pool = NULL;
    struct tun t;
    (void)state;

    assert_int_equal(dp_hbone_pool_new(loop, NULL, &pool), 0);
    open_tun(pool, &t, "127.0.0.1:9000", NULL);
    PUMP_UNTIL(t.responded, 5000);
    assert_int_equal(t.status, 200);
    dp_hbc_abort(srv.last_hbc, "drain deadline");
    PUMP_UNTIL(t.done && srv.conns_done == 1, 5000);
    assert_true(t.done);
    assert_string_not_equal(t.st.error, "");
    assert_string_equal(srv.last.error, "drain deadline");
    assert_true(wait_eof(t.app));
    close(t.app);
    dp_hbone_pool_free(pool);
}

/* ------------------------------------------------------------------ raw h2 client */

static int raw_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *n, size_t nl,
                         const uint8_t *v, size_t vl, uint8_t flags, void *u)
{
    struct raw *r = u;
    (void)s;
    (void)f;
    (void)flags;
    if (nl == 7 && memcmp(n, ":status", 7) == 0 && vl == 3)
        r->status = atoi((const char *)v);
    if (nl == 7 && memcmp(n, "baggage", 7) == 0)
        snprintf(r->baggage, sizeof(r->baggage), "%.*s", (int)vl, (const char *)v);
    return 0;
}

static int raw_on_close(nghttp2_session *s, int32_t id, uint32_t code, void *u)
{
    struct raw *r = u;
    (void)s;
    (void)id;
    r->closed = true;
    r->rst_code = code;
    return 0;
}

static int raw_on_frame(nghttp2_session *s, const nghttp2_frame *f, void *u)
{
    struct raw *r = u;
    (void)s;
    if (f->hd.type == NGHTTP2_GOAWAY)
        r->goaway = true;
    return 0;
}

static void raw_init(struct raw *r, int fd)
{
    nghttp2_session_callbacks *cb;
    memset(r, 0, sizeof(*r));
    r->fd = fd;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, raw_on_header);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, raw_on_close);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, raw_on_frame);
    nghttp2_session_client_new(&r->h2, cb, r);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(r->h2, NGHTTP2_FLAG_NONE, NULL, 0);
}

static void raw_pump(struct raw *r)
{
    const uint8_t *data;
    ssize_t n;
    uint8_t buf[16384];
    while ((n = nghttp2_session_mem_send(r->h2, &data)) > 0) {
        size_t off = 0;
        uint64_t end = dp_now_ms() + 5000;
        while (off < (size_t)n && dp_now_ms() < end) {
            ssize_t w = write(r->fd, data + off, (size_t)n - off);
            if (w > 0) {
                off += (size_t)w;
            } else if (w < 0 && errno != EAGAIN) {
                r->goaway = true; /* the server closed on us */
                return;
            } else {
                dp_loop_run_once(loop, 1);
            }
        }
    }
    while ((n = read(r->fd, buf, sizeof(buf))) > 0)
        nghttp2_session_mem_recv(r->h2, buf, (size_t)n);
    if (n == 0)
        r->goaway = true;
}

static int raw_request(struct raw *r, const nghttp2_nv *nv, size_t n)
{
    int32_t id = nghttp2_submit_request(r->h2, NULL, nv, n, NULL, NULL);
    r->status = 0;
    r->closed = false;
    uint64_t end = dp_now_ms() + 5000;
    while (!r->closed && !r->goaway && dp_now_ms() < end) {
        raw_pump(r);
        dp_loop_run_once(loop, 1);
    }
    return id;
}

#define MKNV(n, v)                                                                                 \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, 0                            \
    }

static void raw_connect(struct raw *r)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(dp_hbone_accept_insecure(loop, sv[0], ID_A, &srv.lim, &ops, &srv, NULL), 0);
    raw_init(r, sv[1]);
}

static void raw_done(struct raw *r)
{
    nghttp2_session_del(r->h2);
    close(r->fd);
}

static void test_raw_non_connect_400(void **state)
{
    struct raw r;
    (void)state;

    raw_connect(&r);
    const nghttp2_nv get[] = {MKNV(":method", "GET"), MKNV(":scheme", "https"),
                              MKNV(":authority", "127.0.0.1:80"), MKNV(":path", "/")};
    raw_request(&r, get, 4);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(srv.last.error, "method must be CONNECT, got: GET"));
    const nghttp2_nv post[] = {MKNV(":method", "POST"), MKNV(":scheme", "http"),
                               MKNV(":authority", "127.0.0.1:80"), MKNV(":path", "/x")};
    raw_request(&r, post, 4);
    assert_int_equal(r.status, 400);
    /* a proper CONNECT on the same connection still works */
    const nghttp2_nv conn[] = {MKNV(":method", "CONNECT"), MKNV(":authority", "127.0.0.1:80")};
    int32_t id = nghttp2_submit_request(r.h2, NULL, conn, 2, NULL, NULL);
    assert_true(id > 0);
    r.status = 0;
    uint64_t end = dp_now_ms() + 3000;
    while (r.status == 0 && dp_now_ms() < end) {
        raw_pump(&r);
        dp_loop_run_once(loop, 1);
    }
    assert_int_equal(r.status, 200);
    assert_string_equal(r.baggage, "k8s.namespace.name=default,k8s.deployment.name=b");
    /* a header block over the limit is refused */
    static char big[20000];
    memset(big, 'x', sizeof(big) - 1);
    nghttp2_nv huge[] = {MKNV(":method", "CONNECT"),
                         MKNV(":authority", "127.0.0.1:80"),
                         {(uint8_t *)"x-big", (uint8_t *)big, 5, sizeof(big) - 1, 0}};
    raw_request(&r, huge, 3);
    assert_int_equal(r.status, 400);
    assert_string_equal(srv.last.error, "request header block too large");
    raw_done(&r);
    pump(20);
}

static void test_raw_missing_authority_400(void **state)
{
    struct raw r;
    (void)state;
    raw_connect(&r);
    /* nghttp2 itself refuses a CONNECT without :authority (RST PROTOCOL_ERROR); both are fine,
     * what matters is that no upstream is dialed */
    const nghttp2_nv conn[] = {MKNV(":method", "CONNECT")};
    raw_request(&r, conn, 1);
    assert_true(r.status == 400 || r.rst_code == NGHTTP2_PROTOCOL_ERROR);
    assert_int_equal(srv.n_ups, 0);
    raw_done(&r);
    pump(20);
}

static void test_raw_settings_flood(void **state)
{
    struct raw r;
    struct dp_hbone_limits lim = srv.lim;
    (void)state;

    srv.lim.max_settings_per_s = 20;
    raw_connect(&r);
    srv.lim = lim;
    for (int i = 0; i < 100; i++)
        nghttp2_submit_settings(r.h2, NGHTTP2_FLAG_NONE, NULL, 0);
    uint64_t end = dp_now_ms() + 3000;
    while (!r.goaway && dp_now_ms() < end) {
        raw_pump(&r);
        dp_loop_run_once(loop, 1);
    }
    assert_true(r.goaway);
    PUMP_UNTIL(srv.conns_done == 1, 2000);
    assert_int_equal(srv.conns_done, 1);
    raw_done(&r);
}

static void test_raw_rst_flood(void **state)
{
    struct raw r;
    struct dp_hbone_limits lim = srv.lim;
    (void)state;

    srv.lim.max_rst_per_s = 50;
    raw_connect(&r);
    srv.lim = lim;
    const nghttp2_nv conn[] = {MKNV(":method", "CONNECT"), MKNV(":authority", "127.0.0.1:80")};
    for (int i = 0; i < 80 && !r.goaway; i++) {
        int32_t id = nghttp2_submit_request(r.h2, NULL, conn, 2, NULL, NULL);
        raw_pump(&r); /* HEADERS out first: nghttp2 drops a request reset before it is sent */
        nghttp2_submit_rst_stream(r.h2, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        raw_pump(&r);
        dp_loop_run_once(loop, 0);
    }
    uint64_t end = dp_now_ms() + 3000;
    while (!r.goaway && dp_now_ms() < end) {
        raw_pump(&r);
        dp_loop_run_once(loop, 1);
    }
    assert_true(r.goaway);
    raw_done(&r);
}

/* ------------------------------------------------------------------ curl interop */

struct thr {
    struct dp_loop *loop;
};

static void *loop_thread(void *arg)
{
    struct thr *t = arg;
    dp_loop_run(t->loop);
    return NULL;
}

static void test_curl_interop(void **state)
{
    char dir[] = "/tmp/amb-hbone-XXXXXX", cmd[1024], kp[80], cp[80], out[64] = "";
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char *pem = NULL;
    pthread_t th;
    struct thr t = {.loop = loop};
    FILE *f;
    (void)state;

    if (system("command -v curl >/dev/null 2>&1") != 0)
        skip();
    assert_non_null(mkdtemp(dir));
    snprintf(kp, sizeof(kp), "%s/key.pem", dir);
    snprintf(cp, sizeof(cp), "%s/cert.pem", dir);
    assert_int_equal(dp_ca_issue(ca, ID_A, 600, &key, &cert), 0);
    assert_int_equal(dp_pem_key_to_pem(key, &pem), 0);
    assert_int_equal(dp_pem_write_file(kp, pem, 0600), 0);
    free(pem);
    assert_int_equal(dp_pem_cert_to_pem(cert, &pem), 0);
    assert_int_equal(dp_pem_write_file(cp, pem, 0644), 0);
    free(pem);

    assert_int_equal(pthread_create(&th, NULL, loop_thread, &t), 0);
    /* GET over h2 with a client certificate: the server must answer 400 */
    snprintf(cmd, sizeof(cmd),
             "curl -s -k --http2 --max-time 5 --cert %s --key %s -o /dev/null "
             "-w '%%{http_code} %%{http_version}' https://127.0.0.1:%u/",
             cp, kp, ntohs(srv.addr.sin_port));
    f = popen(cmd, "r");
    assert_non_null(f);
    if (fgets(out, sizeof(out), f) == NULL)
        out[0] = '\0';
    pclose(f);
    /* without a client certificate the handshake is refused */
    snprintf(cmd, sizeof(cmd),
             "curl -s -k --http2 --max-time 5 -o /dev/null -w '%%{http_code}' "
             "https://127.0.0.1:%u/",
             ntohs(srv.addr.sin_port));
    char out2[32] = "";
    f = popen(cmd, "r");
    if (fgets(out2, sizeof(out2), f) == NULL)
        out2[0] = '\0';
    pclose(f);
    dp_loop_stop(loop);
    pthread_join(th, NULL);
    unlink(kp);
    unlink(cp);
    rmdir(dir);
    X509_free(cert);
    EVP_PKEY_free(key);
    assert_string_equal(out, "400 2");
    assert_string_equal(out2, "000");
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_authority_parse),
            T(test_connect_roundtrip),
            T(test_backpressure),
            T(test_policy_deny_401),
            T(test_upstream_fail_503),
            T(test_bad_authority_400),
            T(test_wrong_san_tls_failure),
            T(test_client_cert_expired),
            T(test_response_timeout),
            T(test_connect_refused),
            T(test_many_streams_and_reuse),
            T(test_stream_cap),
            T(test_refused_stream_retried),
            T(test_idle_timeout),
            T(test_renewed_identity_new_connection),
            T(test_drain),
            T(test_server_abort_resets_streams),
            T(test_raw_non_connect_400),
            T(test_raw_missing_authority_400),
            T(test_raw_settings_flood),
            T(test_raw_rst_flood),
            T(test_curl_interop),
    };
    return cmocka_run_group_tests_name("hbone", tests, group_setup, group_teardown);
}
