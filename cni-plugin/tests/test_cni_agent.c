/* test_cni_agent.c — the adopt request body, reply interpretation, and the real libcurl path
 * against a one-shot unix-socket server thread (canned HTTP answers). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "cni-plugin/cni_agent.h"

static void test_body(void **state)
{
    (void)state;
    const char *ips[] = {"10.1.2.3", "fd00::3"};
    struct cni_pod p = {.uid = "u1", .namespace = "ns", .name = "web", .container_id = "c1",
                        .netns = "/var/run/netns/x", .ips = ips, .n_ips = 2};
    json_t *b = cni_agent_adopt_body(&p);
    char *s = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);
    assert_string_equal(s, "{\"containerId\":\"c1\",\"ips\":[\"10.1.2.3\",\"fd00::3\"],"
                           "\"name\":\"web\",\"namespace\":\"ns\",\"netns\":\"/var/run/netns/x\","
                           "\"uid\":\"u1\"}");
    free(s);
    json_decref(b);
}

static void test_reply(void **state)
{
    (void)state;
    char err[256];
#define R(st, body) cni_agent_parse_adopt_reply(st, body, strlen(body), err, sizeof(err))
    assert_int_equal(R(200, "{\"adopted\":true}"), 0);
    assert_int_equal(R(200, "{\"adopted\":false}"), -EPROTO);
    assert_int_equal(R(200, ""), -EPROTO);
    assert_int_equal(R(200, "garbage"), -EPROTO);
    assert_int_equal(R(503, "{\"error\":\"listeners not ready\"}"), -EAGAIN);
    assert_non_null(strstr(err, "listeners not ready"));
    assert_int_equal(R(503, "\xff\xfe"), -EAGAIN);
    assert_int_equal(R(500, "{\"error\":5}"), -EPROTO);
    assert_non_null(strstr(err, "500"));
#undef R
}

/* ---- one-shot server */
struct srv {
    char path[108];
    int lfd;
    const char *answer;
    char request[4096];
};

static void *serve(void *arg)
{
    struct srv *s = arg;
    int c = accept(s->lfd, NULL, NULL);
    if (c < 0)
        return NULL;
    size_t got = 0;
    /* read until the body (if any) is complete: headers end + Content-Length */
    for (;;) {
        ssize_t n = read(c, s->request + got, sizeof(s->request) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        s->request[got] = 0;
        char *eoh = strstr(s->request, "\r\n\r\n");
        if (eoh) {
            char *cl = strcasestr(s->request, "Content-Length:");
            size_t want = cl ? (size_t)atoi(cl + 15) : 0;
            if (got - (size_t)(eoh + 4 - s->request) >= want)
                break;
        }
    }
    if (s->answer)
        (void)!write(c, s->answer, strlen(s->answer));
    close(c);
    return NULL;
}

static void start(struct srv *s, pthread_t *t)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(s->path, sizeof(s->path), "/tmp/amb-cni-agent-test.%d.sock", (int)getpid());
    unlink(s->path);
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", s->path);
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 1), 0);
    assert_int_equal(pthread_create(t, NULL, serve, s), 0);
}

static void stop(struct srv *s, pthread_t t)
{
    pthread_join(t, NULL);
    close(s->lfd);
    unlink(s->path);
}

static struct cni_conf conf_for(const char *sock)
{
    struct cni_conf c;
    struct cni_error e;
    char j[300];
    snprintf(j, sizeof(j), "{\"cniVersion\":\"1.0.0\",\"agent_socket\":\"%s\","
                           "\"agent_timeout_ms\":1000}", sock);
    assert_int_equal(cni_conf_parse(j, strlen(j), &c, &e), 0);
    return c;
}

static void test_adopt_roundtrip(void **state)
{
    (void)state;
    struct srv s = {.answer = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              "Content-Length: 16\r\nConnection: close\r\n\r\n{\"adopted\":true}"};
    pthread_t t;
    char err[256] = "";
    const char *ips[] = {"10.1.2.3"};
    struct cni_pod p = {.uid = "u-9", .namespace = "ns", .name = "w", .container_id = "c",
                        .netns = "/n", .ips = ips, .n_ips = 1};
    start(&s, &t);
    struct cni_conf c = conf_for(s.path);
    assert_int_equal(cni_agent_adopt(&c, &p, err, sizeof(err)), 0);
    stop(&s, t);
    assert_non_null(strstr(s.request, "POST /v1/pods HTTP/1.1"));
    assert_non_null(strstr(s.request, "\"uid\":\"u-9\""));

    s.answer = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 20\r\nConnection: close\r\n"
               "\r\n{\"error\":\"draining\"}";
    start(&s, &t);
    assert_int_equal(cni_agent_adopt(&c, &p, err, sizeof(err)), -EAGAIN);
    stop(&s, t);
    assert_non_null(strstr(err, "draining"));

    s.answer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    start(&s, &t);
    assert_int_equal(cni_agent_release(&c, "u-9", err, sizeof(err)), 0);
    stop(&s, t);
    assert_non_null(strstr(s.request, "DELETE /v1/pods/u-9 HTTP/1.1"));

    /* agent closes without answering */
    s.answer = NULL;
    start(&s, &t);
    assert_true(cni_agent_adopt(&c, &p, err, sizeof(err)) < 0);
    stop(&s, t);

    /* nobody listening */
    assert_int_equal(cni_agent_adopt(&c, &p, err, sizeof(err)), -ECONNREFUSED);
    assert_non_null(strstr(err, s.path));
    assert_int_equal(cni_agent_release(&c, "bad/uid", err, sizeof(err)), -EINVAL);
    cni_conf_done(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_body),
            cmocka_unit_test(test_reply),
            cmocka_unit_test(test_adopt_roundtrip),
    };
    return cmocka_run_group_tests_name("cni_agent", tests, NULL, NULL);
}
