/*
 * Tests for dataplane/opclient.
 *
 * Without environment: transport failures (nothing listening; a TLS server whose certificate
 * does not chain to the given root) give the documented errors, and a stream against a dead
 * address reports "disconnected" and stops cleanly.
 *
 * With OPCLIENT_URL, OPCLIENT_ROOT, OPCLIENT_TOKEN_FILE, OPCLIENT_IDENTITY, OPCLIENT_NODE
 * (set by test/operator/t_opclient.sh against a real ambit-operator + kube-apiserver): a
 * certificate is signed for the identity and checked, a bad token gets -EACCES, an identity that
 * does not run on the node gets -EPERM, and the config stream delivers upserts and `synced`.
 * Without them the live tests are skipped (cmocka SKIPPED), not passed.
 */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/pem.h>

#include "opclient.h"

static const char *env(const char *k)
{
    const char *v = getenv(k);
    return v && *v ? v : NULL;
}

static bool live(void)
{
    return env("OPCLIENT_URL") != NULL;
}

static unsigned short closed_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof(a);
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &l), 0);
    close(s); /* nobody listens there now */
    return ntohs(a.sin_port);
}

static void test_refused(void **state)
{
    (void)state;
    char addr[64], err[512];
    snprintf(addr, sizeof(addr), "https://127.0.0.1:%u", closed_port());
    struct dp_opclient_cfg cfg = {.url = addr, .root_cert = "/nonexistent", .timeout_ms = 2000};
    char *key = NULL;
    json_t *chain = NULL;
    int r = dp_opclient_fetch_cert(&cfg, "spiffe://cluster.local/ns/a/sa/b", 3600, &key, &chain,
                                   err, sizeof(err));
    assert_int_equal(r, -ECONNREFUSED);
    assert_null(key);
    assert_null(chain);
    assert_non_null(strstr(err, addr));
}

struct collect {
    atomic_int events, upserts, synced, disconnects;
};

static void on_event(const json_t *ev, long http, const char *why, void *arg)
{
    struct collect *c = arg;
    if (!ev) {
        assert_non_null(why);
        assert_int_equal(http, 0); /* nothing answered */
        atomic_fetch_add(&c->disconnects, 1);
        return;
    }
    atomic_fetch_add(&c->events, 1);
    const char *t = json_string_value(json_object_get(ev, "type"));
    if (t && !strcmp(t, "upsert"))
        atomic_fetch_add(&c->upserts, 1);
    if (t && !strcmp(t, "synced"))
        atomic_fetch_add(&c->synced, 1);
}

/* run the stream until `until` says stop or deadline_ms passes */
static void run_stream(const struct dp_opclient_cfg *cfg, const char *node, struct collect *c,
                       bool (*until)(struct collect *), unsigned deadline_ms)
{
    struct dp_opstream *st = NULL;
    assert_int_equal(dp_opstream_start(cfg, node, on_event, c, &st), 0);
    for (unsigned t = 0; t < deadline_ms && !until(c); t += 10)
        usleep(10000);
    dp_opstream_stop(st);
}

static bool until_disconnect(struct collect *c)
{
    return atomic_load(&c->disconnects) > 0;
}

static bool until_synced(struct collect *c)
{
    return atomic_load(&c->synced) > 0;
}

static void test_stream_dead_address(void **state)
{
    (void)state;
    char url[64];
    snprintf(url, sizeof(url), "https://127.0.0.1:%u", closed_port());
    struct dp_opclient_cfg cfg = {.url = url, .root_cert = "/nonexistent", .timeout_ms = 1000};
    struct collect c = {0};
    run_stream(&cfg, "node-1", &c, until_disconnect, 10000);
    assert_true(atomic_load(&c.disconnects) >= 1);
    assert_int_equal(atomic_load(&c.events), 0);
}

static void test_live_certificate(void **state)
{
    (void)state;
    if (!live())
        skip();
    struct dp_opclient_cfg cfg = {.url = env("OPCLIENT_URL"),
                                  .connect_to = env("OPCLIENT_CONNECT_TO"),
                                  .root_cert = env("OPCLIENT_ROOT"),
                                  .token_file = env("OPCLIENT_TOKEN_FILE"),
                                  .timeout_ms = 10000};
    const char *id = env("OPCLIENT_IDENTITY");
    char err[512], *key = NULL;
    json_t *chain = NULL;
    int r = dp_opclient_fetch_cert(&cfg, id, 3600, &key, &chain, err, sizeof(err));
    if (r < 0)
        fail_msg("fetch_cert: %d %s", r, err);
    assert_non_null(strstr(key, "PRIVATE KEY"));
    assert_true(json_array_size(chain) >= 2);
    free(key);
    json_decref(chain);

    /* an identity that runs nowhere near this node */
    char other[512];
    snprintf(other, sizeof(other), "%s-not-here", id);
    r = dp_opclient_fetch_cert(&cfg, other, 3600, &key, &chain, err, sizeof(err));
    assert_int_equal(r, -EPERM);
    assert_non_null(strstr(err, "403"));

    /* a token the API server does not know */
    char tok[] = "/tmp/ambit-opclient-token-XXXXXX";
    int fd = mkstemp(tok);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "garbage\n", 8), 8);
    close(fd);
    cfg.token_file = tok;
    r = dp_opclient_fetch_cert(&cfg, id, 3600, &key, &chain, err, sizeof(err));
    unlink(tok);
    assert_int_equal(r, -EACCES);

    /* a root that did not sign the operator's certificate: TLS refuses */
    cfg.token_file = env("OPCLIENT_TOKEN_FILE");
    cfg.root_cert = env("OPCLIENT_OTHER_ROOT");
    if (cfg.root_cert) {
        r = dp_opclient_fetch_cert(&cfg, id, 3600, &key, &chain, err, sizeof(err));
        assert_int_equal(r, -EPROTO);
    }
}

static void test_live_stream(void **state)
{
    (void)state;
    if (!live())
        skip();
    struct dp_opclient_cfg cfg = {.url = env("OPCLIENT_URL"),
                                  .connect_to = env("OPCLIENT_CONNECT_TO"),
                                  .root_cert = env("OPCLIENT_ROOT"),
                                  .token_file = env("OPCLIENT_TOKEN_FILE"),
                                  .timeout_ms = 10000};
    struct collect c = {0};
    run_stream(&cfg, env("OPCLIENT_NODE"), &c, until_synced, 20000);
    assert_int_equal(atomic_load(&c.disconnects), 0);
    assert_int_equal(atomic_load(&c.synced), 1);
    assert_true(atomic_load(&c.upserts) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_refused),
            cmocka_unit_test(test_stream_dead_address),
            cmocka_unit_test(test_live_certificate),
            cmocka_unit_test(test_live_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
