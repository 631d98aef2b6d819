/* Unit tests for the informer store (kube_store.c) and the work queue (kube_queue.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "kube_queue.h"
#include "kube_store.h"

struct log {
    char text[1024];
};

static void add_line(struct log *l, const char *op, json_t *obj)
{
    const char *ns = json_string_value(json_object_get(json_object_get(obj, "metadata"), "namespace"));
    const char *name = json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
    const char *rv = json_string_value(
            json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
    size_t n = strlen(l->text);

    snprintf(l->text + n, sizeof(l->text) - n, "%s %s/%s@%s;", op, ns ? ns : "", name,
             rv ? rv : "");
}

static void on_add(json_t *obj, void *arg)
{
    add_line(arg, "add", obj);
}

static void on_update(json_t *old_obj, json_t *new_obj, void *arg)
{
    (void)old_obj;
    add_line(arg, "upd", new_obj);
}

static void on_delete(json_t *obj, void *arg)
{
    add_line(arg, "del", obj);
}

static const struct dp_kube_store_ops OPS = {on_add, on_update, on_delete};

static json_t *pod(const char *ns, const char *name, const char *rv)
{
    return json_pack("{s:s,s:{s:s,s:s,s:s}}", "kind", "Pod", "metadata", "namespace", ns, "name",
                     name, "resourceVersion", rv);
}

static void test_store_list_watch_relist(void **state)
{
    struct dp_kube_store s;
    struct log l = {{0}};
    json_t *items, *o, *st;

    (void)state;
    assert_int_equal(dp_kube_store_init(&s, &OPS, &l), 0);
    items = json_pack("[o,o]", pod("a", "p1", "1"), pod("a", "p2", "2"));
    assert_int_equal(dp_kube_store_replace(&s, items, "5"), 0);
    json_decref(items);
    assert_string_equal(s.rv, "5");
    assert_string_equal(l.text, "add a/p1@1;add a/p2@2;");
    l.text[0] = '\0';

    o = pod("a", "p1", "6");
    assert_int_equal(dp_kube_store_apply(&s, DP_KUBE_EV_MODIFIED, o), 0);
    /* a repeated event with the same resourceVersion is a no-op */
    assert_int_equal(dp_kube_store_apply(&s, DP_KUBE_EV_MODIFIED, o), 0);
    json_decref(o);
    o = pod("b", "p3", "7");
    assert_int_equal(dp_kube_store_apply(&s, DP_KUBE_EV_ADDED, o), 0);
    json_decref(o);
    o = pod("a", "p2", "8");
    assert_int_equal(dp_kube_store_apply(&s, DP_KUBE_EV_DELETED, o), 0);
    json_decref(o);
    /* deleting something unknown is harmless */
    o = pod("a", "ghost", "9");
    assert_int_equal(dp_kube_store_apply(&s, DP_KUBE_EV_DELETED, o), 0);
    json_decref(o);
    assert_string_equal(l.text, "upd a/p1@6;add b/p3@7;del a/p2@8;");
    assert_string_equal(s.rv, "9");
    assert_int_equal(dp_kube_store_size(&s), 2);

    o = json_pack("{s:s,s:{s:s}}", "kind", "Pod", "metadata", "resourceVersion", "20");
    assert_int_equal(dp_kube_store_apply(&s, DP_KUBE_EV_BOOKMARK, o), 0);
    json_decref(o);
    assert_string_equal(s.rv, "20");

    st = json_pack("{s:s,s:i,s:s,s:s}", "kind", "Status", "code", 410, "reason", "Expired",
                   "message", "too old resource version");
    assert_int_equal(dp_kube_store_apply(&s, DP_KUBE_EV_ERROR, st), -ESTALE);
    assert_non_null(strstr(s.errmsg, "410"));
    json_decref(st);
    st = json_pack("{s:s,s:i}", "kind", "Status", "code", 500);
    assert_int_equal(dp_kube_store_apply(&s, DP_KUBE_EV_ERROR, st), -EPROTO);
    json_decref(st);

    /* relist after 410: p1 unchanged, p3 vanished, p4 new, p1... */
    l.text[0] = '\0';
    items = json_pack("[o,o]", pod("a", "p1", "6"), pod("c", "p4", "30"));
    assert_int_equal(dp_kube_store_replace(&s, items, "31"), 0);
    json_decref(items);
    assert_string_equal(l.text, "add c/p4@30;del b/p3@7;");
    assert_non_null(dp_kube_store_get(&s, "a/p1"));
    assert_null(dp_kube_store_get(&s, "b/p3"));

    /* nameless objects are refused, not crashed on */
    o = json_pack("{s:{}}", "metadata");
    assert_int_equal(dp_kube_store_apply(&s, DP_KUBE_EV_ADDED, o), -EBADMSG);
    json_decref(o);
    dp_kube_store_done(&s);
    dp_kube_store_done(&s);
}

static void test_queue_dedupe_and_order(void **state)
{
    struct dp_kube_queue q;
    const char *k;

    (void)state;
    dp_kube_queue_init(&q, 100, 10000, 10, 100, 10);
    assert_int_equal(dp_kube_queue_next_due(&q, 0), -1);
    assert_int_equal(dp_kube_queue_add(&q, "b", 1000, 50), 0);
    assert_int_equal(dp_kube_queue_add(&q, "a", 1000, 10), 0);
    assert_int_equal(dp_kube_queue_add(&q, "b", 1000, 500), 0); /* keeps the earlier due */
    assert_int_equal(dp_kube_queue_len(&q), 2);
    assert_int_equal(dp_kube_queue_next_due(&q, 1000), 10);
    assert_int_equal(dp_kube_queue_pop(&q, 1005, &k), -EAGAIN);
    assert_int_equal(dp_kube_queue_pop(&q, 1100, &k), 0);
    assert_string_equal(k, "a");
    assert_int_equal(dp_kube_queue_pop(&q, 1100, &k), 0);
    assert_string_equal(k, "b");
    /* added while processing: queued again only at finish */
    assert_int_equal(dp_kube_queue_add(&q, "b", 1100, 0), 0);
    assert_int_equal(dp_kube_queue_pop(&q, 1100, &k), -EAGAIN);
    dp_kube_queue_finish(&q, "b", 1100);
    assert_int_equal(dp_kube_queue_pop(&q, 1100, &k), 0);
    assert_string_equal(k, "b");
    dp_kube_queue_finish(&q, "b", 1100);
    dp_kube_queue_finish(&q, "a", 1100);
    assert_int_equal(q.n, 0); /* fully forgotten */
    assert_int_equal(dp_kube_queue_add(&q, "", 0, 0), -EINVAL);
    for (int i = 0; i < 10; i++) {
        char key[16];

        snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(dp_kube_queue_add(&q, key, 0, 0), 0);
    }
    assert_int_equal(dp_kube_queue_add(&q, "one-too-many", 0, 0), -ENOSPC);
    dp_kube_queue_done(&q);
}

static void test_queue_backoff(void **state)
{
    struct dp_kube_queue q;
    const char *k;

    (void)state;
    dp_kube_queue_init(&q, 100, 1000, 1000, 1000, 0);
    assert_int_equal(dp_kube_queue_retry(&q, "x", 0), 100);
    assert_int_equal(dp_kube_queue_pop(&q, 100, &k), 0);
    dp_kube_queue_finish(&q, k, 100);
    assert_int_equal(dp_kube_queue_retry(&q, "x", 100), 200);
    assert_int_equal(dp_kube_queue_pop(&q, 300, &k), 0);
    dp_kube_queue_finish(&q, k, 300);
    assert_int_equal(dp_kube_queue_retry(&q, "x", 300), 400);
    assert_int_equal(dp_kube_queue_pop(&q, 700, &k), 0);
    dp_kube_queue_finish(&q, k, 700);
    assert_int_equal(dp_kube_queue_retry(&q, "x", 700), 800);
    assert_int_equal(dp_kube_queue_pop(&q, 1500, &k), 0);
    dp_kube_queue_finish(&q, k, 1500);
    assert_int_equal(dp_kube_queue_retry(&q, "x", 1500), 1000); /* capped */
    assert_int_equal(dp_kube_queue_failures(&q, "x"), 5);
    dp_kube_queue_forget(&q, "x");
    assert_int_equal(dp_kube_queue_failures(&q, "x"), 0);
    dp_kube_queue_done(&q);

    /* the token bucket limits a storm of distinct failing keys: 1 qps, burst 2 */
    dp_kube_queue_init(&q, 1, 1000000, 1, 2, 0);
    assert_int_equal(dp_kube_queue_retry(&q, "a", 0), 1);
    assert_int_equal(dp_kube_queue_retry(&q, "b", 0), 1);
    assert_int_equal(dp_kube_queue_retry(&q, "c", 0), 1000);
    assert_int_equal(dp_kube_queue_retry(&q, "d", 0), 2000);
    dp_kube_queue_done(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_store_list_watch_relist),
            cmocka_unit_test(test_queue_dedupe_and_order),
            cmocka_unit_test(test_queue_backoff),
    };

    return cmocka_run_group_tests_name("kube_store", tests, NULL, NULL);
}
