/* Unit tests for dataplane/yaml: documents, scalars, anchors, errors with line:column. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "yaml.h"

static json_t *parse_ok(const char *src)
{
    char err[256];
    json_t *docs = NULL;
    int r = dp_yaml_parse(src, strlen(src), "t.yaml", &docs, err, sizeof(err));
    if (r < 0)
        fail_msg("unexpected error: %s", err);
    return docs;
}

static int parse_err(const char *src, char *err, size_t errsz)
{
    json_t *docs = NULL;
    int r = dp_yaml_parse(src, strlen(src), "t.yaml", &docs, err, errsz);
    assert_null(docs);
    return r;
}

static void assert_json_eq(json_t *v, const char *expected_json)
{
    json_error_t je;
    json_t *exp = json_loads(expected_json, 0, &je);
    assert_non_null(exp);
    if (!json_equal(v, exp)) {
        char *got = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        fail_msg("got %s, want %s", got, expected_json);
    }
    json_decref(exp);
}

static void test_multi_document(void **state)
{
    (void)state;
    json_t *docs = parse_ok("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n"
                            "---\n# only a comment\n---\n"
                            "apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n...\n");
    assert_int_equal(json_array_size(docs), 2);
    assert_json_eq(json_array_get(docs, 1),
                   "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"b\"}}");
    json_decref(docs);
}

static void test_scalars_core_schema(void **state)
{
    (void)state;
    json_t *docs = parse_ok("a: 1\nb: -0x10\nc: 0o17\nd: 1.5e3\ne: true\nf: False\ng: ~\n"
                            "h: null\ni: \"1\"\nj: '2'\nk: yes\nl: 0x1F\nm: !!str 3\nn: 1.0\n"
                            "o: 9223372036854775807\np: -9223372036854775808\nq: .5\n");
    json_t *d = json_array_get(docs, 0);
    assert_int_equal(json_integer_value(json_object_get(d, "a")), 1);
    /* "-0x10" is not a YAML 1.2 int (no sign with 0x): string */
    assert_string_equal(json_string_value(json_object_get(d, "b")), "-0x10");
    assert_int_equal(json_integer_value(json_object_get(d, "c")), 15);
    assert_true(json_real_value(json_object_get(d, "d")) == 1500.0);
    assert_true(json_is_true(json_object_get(d, "e")));
    assert_true(json_is_false(json_object_get(d, "f")));
    assert_true(json_is_null(json_object_get(d, "g")));
    assert_true(json_is_null(json_object_get(d, "h")));
    assert_string_equal(json_string_value(json_object_get(d, "i")), "1");
    assert_string_equal(json_string_value(json_object_get(d, "j")), "2");
    assert_string_equal(json_string_value(json_object_get(d, "k")), "yes"); /* YAML 1.2 */
    assert_int_equal(json_integer_value(json_object_get(d, "l")), 31);
    assert_string_equal(json_string_value(json_object_get(d, "m")), "3");
    assert_true(json_is_real(json_object_get(d, "n")));
    assert_true(json_integer_value(json_object_get(d, "o")) == 9223372036854775807LL);
    assert_true(json_integer_value(json_object_get(d, "p")) == (-9223372036854775807LL - 1));
    assert_true(json_real_value(json_object_get(d, "q")) == 0.5);
    json_decref(docs);
}

static void test_block_scalars(void **state)
{
    (void)state;
    json_t *docs = parse_ok("lit: |\n  line1\n  line2\nfold: >\n  a\n  b\nstrip: |-\n  x\n");
    json_t *d = json_array_get(docs, 0);
    assert_string_equal(json_string_value(json_object_get(d, "lit")), "line1\nline2\n");
    assert_string_equal(json_string_value(json_object_get(d, "fold")), "a b\n");
    assert_string_equal(json_string_value(json_object_get(d, "strip")), "x");
    json_decref(docs);
}

static void test_anchors_and_merge(void **state)
{
    (void)state;
    json_t *docs = parse_ok("base: &b {x: 1, y: 2}\nuse: *b\nmerged:\n  <<: *b\n  y: 3\n");
    assert_json_eq(json_array_get(docs, 0), "{\"base\":{\"x\":1,\"y\":2},\"use\":{\"x\":1,\"y\":2},"
                                            "\"merged\":{\"x\":1,\"y\":3}}");
    json_decref(docs);
}

static void test_error_line_column(void **state)
{
    (void)state;
    char err[256];
    /* an unterminated flow sequence that starts on line 3 */
    int r = parse_err("a: 1\nb:\n  c: [1, 2\n", err, sizeof(err));
    assert_int_equal(r, -EINVAL);
    int line = 0, col = 0;
    assert_int_equal(sscanf(err, "t.yaml:%d:%d:", &line, &col), 2);
    assert_true(line >= 3);
    assert_true(col >= 1);

    r = parse_err("a: 1\na: 2\n", err, sizeof(err));
    assert_int_equal(r, -EINVAL);
    assert_string_equal(err, "t.yaml:2:1: duplicate key \"a\"");

    r = parse_err("x: *nope\n", err, sizeof(err));
    assert_int_equal(r, -EINVAL);
    assert_string_equal(err, "t.yaml:1:4: unknown alias *nope");

    r = parse_err("x: .inf\n", err, sizeof(err));
    assert_int_equal(r, -EINVAL);
    assert_non_null(strstr(err, "t.yaml:1:4: .inf cannot be represented in JSON"));

    r = parse_err("x: 99999999999999999999\n", err, sizeof(err));
    assert_int_equal(r, -EINVAL);
    assert_non_null(strstr(err, "out of range"));

    r = parse_err("x: !!int abc\n", err, sizeof(err));
    assert_int_equal(r, -EINVAL);
    assert_non_null(strstr(err, "does not match tag"));

    r = parse_err("? [a, b]\n: c\n", err, sizeof(err));
    assert_int_equal(r, -EINVAL);
    assert_non_null(strstr(err, "mapping keys must be scalars"));

    r = parse_err("key: value\n\tbad: tab\n", err, sizeof(err));
    assert_int_equal(r, -EINVAL);
    assert_int_equal(sscanf(err, "t.yaml:%d:%d:", &line, &col), 2);
    assert_int_equal(line, 2);
}

static void test_alias_bomb(void **state)
{
    (void)state;
    char err[256];
    const char *bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                       "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                       "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                       "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                       "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                       "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    int r = parse_err(bomb, err, sizeof(err));
    assert_int_equal(r, -EINVAL);
    assert_non_null(strstr(err, "alias bomb"));
}

static void test_deep_nesting(void **state)
{
    (void)state;
    char err[256];
    char buf[4096];
    size_t n = 0;
    for (int i = 0; i < 1000; i++)
        buf[n++] = '[';
    buf[n] = '\0';
    int r = parse_err(buf, err, sizeof(err));
    assert_int_equal(r, -EINVAL);
    assert_non_null(strstr(err, "nesting deeper"));
}

static void test_truncated_and_binary(void **state)
{
    (void)state;
    const char *src = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: {a: b}\n"
                      "data:\n  k: |\n    v\n  list: [1, \"two\", {three: 3}]\n";
    /* every prefix either parses or fails with a located error (ASan watches the rest) */
    for (size_t i = 0; i <= strlen(src); i++) {
        char err[256];
        json_t *docs = NULL;
        int r = dp_yaml_parse(src, i, "t.yaml", &docs, err, sizeof(err));
        if (r == 0)
            json_decref(docs);
        else
            assert_non_null(strstr(err, "t.yaml:"));
    }
    unsigned char bin[512];
    unsigned seed = 7;
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof(bin); i++) {
            seed = seed * 1103515245u + 12345u;
            bin[i] = (unsigned char)(seed >> 16);
        }
        char err[256];
        json_t *docs = NULL;
        if (dp_yaml_parse((const char *)bin, sizeof(bin), "bin", &docs, err, sizeof(err)) == 0)
            json_decref(docs);
    }
    char err[256];
    json_t *docs = NULL;
    /* a NUL byte inside a scalar */
    assert_true(dp_yaml_parse("a: \"x\\0y\"\n", 10, "t.yaml", &docs, err, sizeof(err)) < 0);
    assert_null(docs);
}

static void test_file(void **state)
{
    (void)state;
    char path[] = "/tmp/ambit-yaml-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *src = "kind: A\n---\nkind: B\n";
    assert_int_equal(write(fd, src, strlen(src)), (ssize_t)strlen(src));
    close(fd);
    char err[256];
    json_t *docs = NULL;
    assert_int_equal(dp_yaml_parse_file(path, &docs, err, sizeof(err)), 0);
    assert_int_equal(json_array_size(docs), 2);
    json_decref(docs);
    unlink(path);
    docs = NULL;
    assert_int_equal(dp_yaml_parse_file(path, &docs, err, sizeof(err)), -ENOENT);
    assert_null(docs);
    assert_non_null(strstr(err, "cannot open"));
}

static void test_dump_roundtrip(void **state)
{
    (void)state;
    const char *cases[] = {
            "{\"a\":1,\"b\":\"x\",\"c\":[1,\"2\",true,null,{\"d\":[]}],\"e\":{}}",
            "{\"s\":[\"yes\",\"null\",\"1.5\",\"0x10\",\"a: b\",\"x #c\",\"-x\",\"\",\"l\\nm\","
            "\"q\\\"\",\"k:\",\" sp\",\"\\u0001\",\"ok/path.v1\"]}",
            "[[1,2],[{\"a\":{\"b\":[{\"c\":1,\"d\":2}]}}],[]]",
            "{\"nested\":{\"list\":[{\"x\":1},{\"y\":[1,2]}],\"m\":{\"n\":{\"o\":\"p\"}}}}",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_error_t je;
        json_t *v = json_loads(cases[i], 0, &je);
        assert_non_null(v);
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        assert_int_equal(dp_yaml_dump(v, f), 0);
        fclose(f);
        char err[256];
        json_t *docs = NULL;
        if (dp_yaml_parse(text, len, "dump", &docs, err, sizeof(err)) < 0)
            fail_msg("case %zu: %s\n%s", i, err, text);
        if (!json_equal(json_array_get(docs, 0), v))
            fail_msg("case %zu did not round-trip:\n%s", i, text);
        json_decref(docs);
        json_decref(v);
        free(text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_multi_document),    cmocka_unit_test(test_scalars_core_schema),
            cmocka_unit_test(test_block_scalars),     cmocka_unit_test(test_anchors_and_merge),
            cmocka_unit_test(test_error_line_column), cmocka_unit_test(test_alias_bomb),
            cmocka_unit_test(test_deep_nesting),      cmocka_unit_test(test_truncated_and_binary),
            cmocka_unit_test(test_file),              cmocka_unit_test(test_dump_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
