/* test_telemetry.c — Istio label set, escaping, byte directions, exposition shape. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <netinet/in.h>

#include "buf.h"
#include "node-agent/telemetry.h"

static void set_addr(struct sockaddr_storage *ss, const char *ip, uint16_t port)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    memset(ss, 0, sizeof(*ss));
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    inet_pton(AF_INET, ip, &s4->sin_addr);
}

static char *render(struct na_telemetry *t)
{
    struct dp_buf *b = NULL;
    assert_int_equal(dp_buf_new(4096, 1 << 20, &b), 0);
    assert_int_equal(na_telemetry_render(t, &b), 0);
    assert_int_equal(dp_buf_append(&b, "", 1), 0);
    char *s = strdup(dp_buf_head(b));
    dp_buf_free(b);
    return s;
}

static void fill(struct na_conn_tel *c)
{
    memset(c, 0, sizeof(*c));
    c->outbound = true;
    c->mtls = true;
    set_addr(&c->src, "10.0.0.1", 40000);
    set_addr(&c->dst, "10.0.0.2", 15008);
    set_addr(&c->hbone_target, "10.0.0.2", 8080);
    c->has_src_wl = true;
    c->src_wl.name = "client-abc";
    c->src_wl.workload_name = "client";
    c->src_wl.ns = "ns1";
    c->src_wl.canonical_name = "client";
    c->src_wl.canonical_revision = "v1";
    c->src_wl.app = "client";
    c->src_wl.version = "v1";
    c->src_wl.cluster = "Kubernetes";
    c->has_svc = true;
    c->svc.hostname = "srv.ns1.svc.cluster.local";
    c->svc.name = "srv";
    c->svc.ns = "ns1";
    strcpy(c->src_identity, "spiffe://cluster.local/ns/ns1/sa/client");
    strcpy(c->dst_identity, "spiffe://cluster.local/ns/ns1/sa/srv");
}

static void test_labels_and_bytes(void **state)
{
    (void)state;
    struct na_telemetry *t = NULL;
    assert_int_equal(na_telemetry_new(&t), 0);
    struct na_conn_tel c;
    fill(&c);
    na_tel_open(t, &c);
    assert_true(c.opened);
    na_tel_close(t, &c, 100, 2000, "-", NULL);
    char *s = render(t);
    assert_non_null(strstr(s, "istio_tcp_connections_opened_total{reporter=\"source\","
                              "source_workload=\"client\""));
    assert_non_null(strstr(s, "source_principal=\"spiffe://cluster.local/ns/ns1/sa/client\""));
    assert_non_null(strstr(s, "destination_service=\"srv.ns1.svc.cluster.local\""));
    assert_non_null(strstr(s, "destination_workload=\"unknown\""));
    assert_non_null(strstr(s, "request_protocol=\"tcp\",response_flags=\"-\","
                              "connection_security_policy=\"mutual_tls\"} 1\n"));
    /* received = client -> server, sent = server -> client */
    const char *rx = strstr(s, "istio_tcp_received_bytes_total{");
    assert_non_null(rx);
    assert_non_null(strstr(rx, "} 100\n"));
    const char *tx = strstr(s, "istio_tcp_sent_bytes_total{");
    assert_non_null(tx);
    assert_true(strstr(tx, "} 2000\n") != NULL);
    free(s);
    na_telemetry_free(t);
}

static void test_escaping_and_plaintext(void **state)
{
    (void)state;
    struct na_telemetry *t = NULL;
    assert_int_equal(na_telemetry_new(&t), 0);
    struct na_conn_tel c;
    fill(&c);
    c.outbound = false;
    c.mtls = false;
    c.src_identity[0] = '\0';
    c.src_wl.workload_name = "evil\"} 1\nfake_metric{";
    na_tel_open(t, &c);
    na_tel_close(t, &c, 0, 0, "DENY", "denied");
    char *s = render(t);
    assert_null(strstr(s, "\nfake_metric"));
    assert_non_null(strstr(s, "source_workload=\"evil\\\"} 1\\nfake_metric{\""));
    assert_non_null(strstr(s, "reporter=\"destination\""));
    assert_non_null(strstr(s, "source_principal=\"unknown\""));
    assert_non_null(strstr(s, "connection_security_policy=\"unknown\""));
    assert_non_null(strstr(s, "response_flags=\"DENY\""));
    free(s);
    na_telemetry_free(t);
}

static void test_not_opened_not_closed(void **state)
{
    (void)state;
    struct na_telemetry *t = NULL;
    assert_int_equal(na_telemetry_new(&t), 0);
    struct na_conn_tel c;
    fill(&c);
    na_tel_close(t, &c, 0, 0, "-", "no healthy upstream");
    char *s = render(t);
    assert_null(strstr(s, "istio_tcp_connections_closed_total{"));
    const char *f = strstr(s, "istio_tcp_connections_failed_total{reporter=\"source\"");
    assert_non_null(f);
    assert_non_null(strstr(f, "response_flags=\"-\""));
    assert_non_null(strstr(s, "# TYPE istio_tcp_connections_closed_total counter"));
    free(s);
    na_telemetry_free(t);
}

static void test_addr_str(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    char buf[64];
    set_addr(&ss, "192.168.1.2", 443);
    assert_string_equal(na_addr_str((struct sockaddr *)&ss, buf, sizeof(buf)), "192.168.1.2:443");
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    memset(&ss, 0, sizeof(ss));
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(15008);
    inet_pton(AF_INET6, "fd00::5", &s6->sin6_addr);
    assert_string_equal(na_addr_str((struct sockaddr *)&ss, buf, sizeof(buf)), "[fd00::5]:15008");
    memset(&ss, 0, sizeof(ss));
    assert_string_equal(na_addr_str((struct sockaddr *)&ss, buf, sizeof(buf)), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_labels_and_bytes),
            cmocka_unit_test(test_escaping_and_plaintext),
            cmocka_unit_test(test_not_opened_not_closed),
            cmocka_unit_test(test_addr_str),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
