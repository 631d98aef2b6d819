/*
 * Informer test against a scripted HTTP/1.1 server on loopback (a recorded-stream replayer:
 * the real API server is exercised by the cluster layer). The script covers paginated lists,
 * a watch stream split mid-line across writes, bookmarks, an ERROR 410 event (relist with
 * deletes reported), a stream cut mid-line (re-watch from the last resourceVersion) and an
 * HTTP 410 on watch start.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "kube_informer.h"

#define HDR "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
#define POD(name, rv)                                                                              \
    "{\"metadata\":{\"namespace\":\"ns\",\"name\":\"" name "\",\"resourceVersion\":\"" rv "\"}}"
#define EV(type, name, rv)                                                                         \
    "{\"type\":\"" type "\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{"     \
    "\"namespace\":\"ns\",\"name\":\"" name "\",\"resourceVersion\":\"" rv "\"}}}\n"

/* objects as the API server sends them: with server-side-apply bookkeeping */
#define MF "\"managedFields\":[{\"manager\":\"kubectl\",\"fieldsV1\":{\"f:spec\":{}}}]"
#define POD_MF(name, rv)                                                                           \
    "{\"metadata\":{\"namespace\":\"ns\",\"name\":\"" name "\",\"resourceVersion\":\"" rv    \
    "\"," MF "}}"

struct step {
    const char *expect; /* substring the request line must contain */
    const char *parts[6];
};

static const struct step SCRIPT[] = {
        {"GET /api/v1/pods?labelSelector=app%3Dx&limit=500 ",
         {HDR "{\"kind\":\"PodList\",\"metadata\":{\"continue\":\"c1\"},\"items\":[" POD("p1", "1")
              "]}"}},
        {"continue=c1",
         {HDR "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"10\"},\"items\":[" POD(
                 "p2", "2") "]}"}},
        {"resourceVersion=10&watch=true&allowWatchBookmarks=true",
         {HDR "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"meta",
          "data\":{\"namespace\":\"ns\",\"name\":\"p3\",\"resourceVersion\":\"11\"}}}\n{\"type\":"
          "\"BOOKMARK\",\"object\":{\"kind\":\"Pod\",\"metadata\":{\"resourceVersion\":\"12\"}}}\n",
          "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\","
          "\"message\":\"too old resource version\"}}\n"}},
        {"limit=500 ",
         {HDR "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"20\"},\"items\":[" POD(
                 "p1", "13") "," POD("p4", "14") "]}"}},
        {"resourceVersion=20&watch=true",
         {HDR EV("MODIFIED", "p4", "21"), "{\"type\":\"DELETED\",\"object\":{\"kind"}},
        {"resourceVersion=21&watch=true",
         {"HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
          "{\"kind\":\"Status\",\"code\":410,\"reason\":\"Gone\"}"}},
        {"limit=500 ",
         {HDR "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"30\"},\"items\":[" POD(
                 "p4", "21") "," POD_MF("p6", "22") "]}"}},
        {"resourceVersion=30&watch=true",
         {HDR "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{"
              "\"namespace\":\"ns\",\"name\":\"p5\",\"resourceVersion\":\"31\"," MF "}}}\n"}},
};

struct server {
    int lfd;
    int port;
    pthread_t th;
    int served;
    char mismatch[512];
    volatile int stop;
};

static void *serve(void *arg)
{
    struct server *s = arg;

    for (size_t i = 0; i < sizeof(SCRIPT) / sizeof(SCRIPT[0]) && !s->stop; i++) {
        char req[4096];
        size_t n = 0;
        int fd = accept(s->lfd, NULL, NULL);

        if (fd < 0)
            break;
        while (n < sizeof(req) - 1) {
            ssize_t k = read(fd, req + n, sizeof(req) - 1 - n);

            if (k <= 0)
                break;
            n += (size_t)k;
            req[n] = '\0';
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        req[n] = '\0';
        {
            char *eol = strstr(req, "\r\n");

            if (eol)
                *eol = '\0';
        }
        if (strstr(req, SCRIPT[i].expect) == NULL && s->mismatch[0] == '\0')
            snprintf(s->mismatch, sizeof(s->mismatch), "step %zu: \"%.200s\" lacks \"%.100s\"", i, req,
                     SCRIPT[i].expect);
        for (size_t p = 0; p < 6 && SCRIPT[i].parts[p]; p++) {
            if (write(fd, SCRIPT[i].parts[p], strlen(SCRIPT[i].parts[p])) < 0)
                break;
            usleep(20000);
        }
        /* the last step's watch stays open until the test ends */
        if (i + 1 == sizeof(SCRIPT) / sizeof(SCRIPT[0]))
            while (!s->stop)
                usleep(10000);
        close(fd);
        s->served = (int)i + 1;
    }
    return NULL;
}

struct seen {
    char log[2048];
    int synced;
};

static void note(struct seen *s, const char *op, json_t *obj)
{
    size_t n = strlen(s->log);

    snprintf(s->log + n, sizeof(s->log) - n, "%s %s@%s;", op, dp_kube_meta_str(obj, "name"),
             dp_kube_meta_str(obj, "resourceVersion"));
}

static void on_add(json_t *obj, void *arg)
{
    note(arg, "add", obj);
}
static void on_update(json_t *o, json_t *n, void *arg)
{
    (void)o;
    note(arg, "upd", n);
}
static void on_delete(json_t *obj, void *arg)
{
    note(arg, "del", obj);
}
static void on_synced(struct dp_kube_informer *inf, void *arg)
{
    struct seen *s = arg;
    size_t n = strlen(s->log);

    (void)inf;
    s->synced++;
    snprintf(s->log + n, sizeof(s->log) - n, "synced;");
}

/* a prune hook that marks what it saw */
static void mark_pruned(json_t *obj)
{
    json_object_set_new(json_object_get(obj, "metadata"), "pruned", json_true());
}

static void test_informer_script(void **state)
{
    static const struct dp_kube_informer_ops ops = {on_add, on_update, on_delete, on_synced};
    struct dp_kube_list_opts sel = {.label_selector = "app=x"};
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t salen = sizeof(sa);
    struct dp_kube_config cfg = {0};
    struct dp_kube_multi *m = NULL;
    struct dp_kube_informer *inf = NULL;
    struct dp_loop *loop = NULL;
    struct server srv = {0};
    struct seen seen;
    char url[64];
    uint64_t deadline;

    (void)state;
    memset(&seen, 0, sizeof(seen));
    srv.lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(srv.lfd >= 0);
    assert_int_equal(bind(srv.lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(srv.lfd, 8), 0);
    assert_int_equal(getsockname(srv.lfd, (struct sockaddr *)&sa, &salen), 0);
    srv.port = ntohs(sa.sin_port);
    assert_int_equal(pthread_create(&srv.th, NULL, serve, &srv), 0);

    snprintf(url, sizeof(url), "http://127.0.0.1:%d", srv.port);
    cfg.server = url;
    assert_int_equal(dp_loop_new(&loop), 0);
    assert_int_equal(dp_kube_multi_new(loop, &cfg, &m), 0);
    assert_int_equal(dp_kube_informer_new(m, &DP_KUBE_RES_PODS, NULL, &sel, &ops, &seen, &inf), 0);
    dp_kube_informer_set_backoff(inf, 10, 50);
    dp_kube_informer_drop_managed_fields(inf, true);
    dp_kube_informer_set_prune(inf, mark_pruned);
    assert_int_equal(dp_kube_informer_start(inf), 0);
    assert_int_equal(dp_kube_informer_start(inf), -EALREADY);

    deadline = dp_now_ms() + 10000;
    while (dp_now_ms() < deadline &&
           (srv.served < (int)(sizeof(SCRIPT) / sizeof(SCRIPT[0])) - 1 ||
            dp_kube_informer_get(inf, "ns/p5") == NULL))
        dp_loop_run_once(loop, 50);

    if (srv.mismatch[0])
        fail_msg("%s", srv.mismatch);
    assert_string_equal(seen.log,
                        "add p1@1;add p2@2;synced;"   /* two pages */
                        "add p3@11;"                  /* watch */
                        "upd p1@13;add p4@14;del p2@2;del p3@11;synced;" /* 410 -> relist diff */
                        "upd p4@21;"                  /* then the stream is cut mid-line */
                        "add p6@22;del p1@13;synced;" /* HTTP 410 on re-watch -> relist */
                        "add p5@31;");
    {
        const struct dp_kube_informer_stats *st = dp_kube_informer_stats(inf);

        assert_int_equal(st->lists, 3);
        assert_int_equal(st->relists_410, 2);
        assert_int_equal(st->restarts, 1);
        assert_non_null(strstr(st->last_errmsg, "mid-line"));
    }
    assert_true(dp_kube_informer_synced(inf));
    assert_int_equal(dp_kube_store_size(dp_kube_informer_store(inf)), 3);
    assert_string_equal(dp_kube_informer_store(inf)->rv, "31");
    /* managedFields dropped from listed (p6) and watched (p5) objects */
    assert_non_null(dp_kube_informer_get(inf, "ns/p6"));
    assert_null(json_object_get(json_object_get(dp_kube_informer_get(inf, "ns/p6"), "metadata"),
                                "managedFields"));
    assert_null(json_object_get(json_object_get(dp_kube_informer_get(inf, "ns/p5"), "metadata"),
                                "managedFields"));
    assert_non_null(json_object_get(json_object_get(dp_kube_informer_get(inf, "ns/p5"),
                                                    "metadata"), "resourceVersion"));
    /* the prune hook ran on listed and watched objects */
    assert_true(json_is_true(json_object_get(
            json_object_get(dp_kube_informer_get(inf, "ns/p6"), "metadata"), "pruned")));
    assert_true(json_is_true(json_object_get(
            json_object_get(dp_kube_informer_get(inf, "ns/p5"), "metadata"), "pruned")));

    srv.stop = 1;
    dp_kube_informer_free(inf);
    dp_kube_multi_free(m);
    dp_loop_free(loop);
    shutdown(srv.lfd, SHUT_RDWR);
    pthread_join(srv.th, NULL);
    close(srv.lfd);
}

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(dp_kube_backoff_ms(0, 500, 30000, 0), 250);
    assert_true(dp_kube_backoff_ms(0, 500, 30000, 1023) < 500);
    assert_int_equal(dp_kube_backoff_ms(3, 500, 30000, 0), 2000);
    assert_int_equal(dp_kube_backoff_ms(30, 500, 30000, 0), 15000);
    assert_true(dp_kube_backoff_ms(30, 500, 30000, 1023) < 30000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_backoff),
            cmocka_unit_test(test_informer_script),
    };

    return cmocka_run_group_tests_name("kube_informer", tests, NULL, NULL);
}
