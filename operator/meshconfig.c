/*
 * meshconfig.c — MeshConfig YAML -> struct op_meshconfig. See meshconfig.h.
 *
 * The fields are a table (name, parser): a parser validates one value and stores it, or writes
 * what is wrong into the error (the caller prefixes source and field).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "meshconfig.h"
#include "yaml.h"

const char *op_access_log_encoding_str(enum op_access_log_encoding e)
{
    return e == OP_ACCESS_LOG_JSON ? "JSON" : "TEXT";
}

void op_meshconfig_free(struct op_meshconfig *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->trust_domain);
    free(cfg->root_ns);
    free(cfg->access_log_file);
    json_decref(cfg->extension_providers);
    json_decref(cfg->default_providers);
    free(cfg);
}

/* SPIFFE trust domain characters (letters, digits, '.', '-', '_'), at most 253 */
static bool valid_trust_domain(const char *s, char *why, size_t whysz)
{
    size_t n = strlen(s);

    if (n == 0) {
        snprintf(why, whysz, "must not be empty");
        return false;
    }
    if (n > 253) {
        snprintf(why, whysz, "longer than 253 characters");
        return false;
    }
    for (const char *p = s; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '-' || *p == '_')) {
            if (*p > 0x20 && *p < 0x7f)
                snprintf(why, whysz, "'%.253s' has a character a trust domain cannot hold: '%c'",
                         s, *p);
            else
                snprintf(why, whysz, "'%.253s' has a space, control or non-ASCII character", s);
            return false;
        }
    }
    return true;
}

/* a Kubernetes namespace name: DNS-1123 label */
static bool valid_namespace(const char *s, char *why, size_t whysz)
{
    size_t n = strlen(s);

    if (n > 63) {
        snprintf(why, whysz, "longer than 63 characters");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

        if (!alnum && !(c == '-' && i > 0 && i + 1 < n)) {
            snprintf(why, whysz, "'%.63s' is not a namespace name (lower-case letters, digits, '-')",
                     s);
            return false;
        }
    }
    return true;
}

static int set_str(char **dst, const char *v)
{
    char *c = strdup(v);

    if (c == NULL)
        return -ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

/* ------------------------------------------------------------------ field parsers */

/* Each returns 0, -EINVAL (why filled, field optionally refined into `field`), -ENOMEM. */
typedef int field_parser(struct op_meshconfig *cfg, const json_t *v, char *field, size_t fieldsz,
                         char *why, size_t whysz, json_t *unknown);

static int p_trust_domain(struct op_meshconfig *cfg, const json_t *v, char *field,
                          size_t fieldsz, char *why, size_t whysz, json_t *unknown)
{
    (void)field, (void)fieldsz, (void)unknown;
    if (!json_is_string(v)) {
        snprintf(why, whysz, "must be a string");
        return -EINVAL;
    }
    if (!valid_trust_domain(json_string_value(v), why, whysz))
        return -EINVAL;
    return set_str(&cfg->trust_domain, json_string_value(v));
}

static int p_root_ns(struct op_meshconfig *cfg, const json_t *v, char *field, size_t fieldsz,
                     char *why, size_t whysz, json_t *unknown)
{
    (void)field, (void)fieldsz, (void)unknown;
    if (!json_is_string(v)) {
        snprintf(why, whysz, "must be a string");
        return -EINVAL;
    }
    if (json_string_length(v) == 0) /* as in Istio: empty = the default */
        return 0;
    if (!valid_namespace(json_string_value(v), why, whysz))
        return -EINVAL;
    return set_str(&cfg->root_ns, json_string_value(v));
}

static int p_enable_tracing(struct op_meshconfig *cfg, const json_t *v, char *field,
                            size_t fieldsz, char *why, size_t whysz, json_t *unknown)
{
    (void)field, (void)fieldsz, (void)unknown;
    if (!json_is_boolean(v)) {
        snprintf(why, whysz, "must be true or false");
        return -EINVAL;
    }
    cfg->enable_tracing = json_is_true(v);
    return 0;
}

static int p_access_log_file(struct op_meshconfig *cfg, const json_t *v, char *field,
                             size_t fieldsz, char *why, size_t whysz, json_t *unknown)
{
    (void)field, (void)fieldsz, (void)unknown;
    if (!json_is_string(v)) {
        snprintf(why, whysz, "must be a string");
        return -EINVAL;
    }
    if (json_string_length(v) > 4096) {
        snprintf(why, whysz, "longer than 4096 characters");
        return -EINVAL;
    }
    return set_str(&cfg->access_log_file, json_string_value(v));
}

static int p_access_log_encoding(struct op_meshconfig *cfg, const json_t *v, char *field,
                                 size_t fieldsz, char *why, size_t whysz, json_t *unknown)
{
    const char *s = json_string_value(v);

    (void)field, (void)fieldsz, (void)unknown;
    if (s == NULL) {
        snprintf(why, whysz, "must be TEXT or JSON, got a %s",
                 json_is_number(v) ? "number" : json_is_boolean(v) ? "boolean" : "non-string");
        return -EINVAL;
    }
    if (strcmp(s, "TEXT") == 0)
        cfg->access_log_encoding = OP_ACCESS_LOG_TEXT;
    else if (strcmp(s, "JSON") == 0)
        cfg->access_log_encoding = OP_ACCESS_LOG_JSON;
    else {
        snprintf(why, whysz, "must be TEXT or JSON, got '%.64s'", s);
        return -EINVAL;
    }
    return 0;
}

static int p_extension_providers(struct op_meshconfig *cfg, const json_t *v, char *field,
                                 size_t fieldsz, char *why, size_t whysz, json_t *unknown)
{
    json_t *p;
    size_t i;

    (void)unknown;
    if (!json_is_array(v)) {
        snprintf(why, whysz, "must be a list");
        return -EINVAL;
    }
    if (json_array_size(v) > OP_MESHCONFIG_MAX_PROVIDERS) {
        snprintf(why, whysz, "more than %d providers", OP_MESHCONFIG_MAX_PROVIDERS);
        return -EINVAL;
    }
    json_array_foreach(v, i, p) {
        const char *name = json_string_value(json_object_get(p, "name"));

        if (!json_is_object(p)) {
            snprintf(field, fieldsz, "extensionProviders[%zu]", i);
            snprintf(why, whysz, "must be a mapping");
            return -EINVAL;
        }
        snprintf(field, fieldsz, "extensionProviders[%zu].name", i);
        if (name == NULL || name[0] == '\0') {
            snprintf(why, whysz, "must be a non-empty string");
            return -EINVAL;
        }
        for (size_t j = 0; j < i; j++) {
            const char *other = json_string_value(json_object_get(json_array_get(v, j), "name"));

            if (strcmp(name, other) == 0) {
                snprintf(why, whysz, "'%.64s' is already the name of extensionProviders[%zu]",
                         name, j);
                return -EINVAL;
            }
        }
    }
    json_decref(cfg->extension_providers);
    cfg->extension_providers = json_deep_copy(v);
    return cfg->extension_providers ? 0 : -ENOMEM;
}

static int p_default_providers(struct op_meshconfig *cfg, const json_t *v, char *field,
                               size_t fieldsz, char *why, size_t whysz, json_t *unknown)
{
    static const char *const KINDS[] = {"tracing", "metrics", "accessLogging"};
    json_t *copy, *list, *n;
    const char *k;
    size_t i;

    if (!json_is_object(v)) {
        snprintf(why, whysz, "must be a mapping");
        return -EINVAL;
    }
    copy = json_object();
    if (copy == NULL)
        return -ENOMEM;
    json_object_foreach((json_t *)v, k, list) {
        bool known = false;

        for (size_t j = 0; j < sizeof(KINDS) / sizeof(KINDS[0]); j++)
            known |= strcmp(k, KINDS[j]) == 0;
        if (!known) {
            char name[300];

            snprintf(name, sizeof(name), "defaultProviders.%.200s", k);
            json_array_append_new(unknown, json_string(name));
            continue;
        }
        if (json_is_null(list))
            continue;
        snprintf(field, fieldsz, "defaultProviders.%s", k);
        if (!json_is_array(list)) {
            snprintf(why, whysz, "must be a list of provider names");
            goto invalid;
        }
        json_array_foreach(list, i, n) {
            if (!json_is_string(n) || json_string_length(n) == 0) {
                snprintf(field, fieldsz, "defaultProviders.%s[%zu]", k, i);
                snprintf(why, whysz, "must be a non-empty string");
                goto invalid;
            }
        }
        if (json_object_set(copy, k, list) < 0) {
            json_decref(copy);
            return -ENOMEM;
        }
    }
    json_decref(cfg->default_providers);
    cfg->default_providers = copy;
    return 0;
invalid:
    json_decref(copy);
    return -EINVAL;
}

static int p_default_config(struct op_meshconfig *cfg, const json_t *v, char *field,
                            size_t fieldsz, char *why, size_t whysz, json_t *unknown)
{
    (void)cfg, (void)field, (void)fieldsz, (void)unknown;
    if (!json_is_object(v)) { /* proxy defaults: not used by ambit, but must be a mapping */
        snprintf(why, whysz, "must be a mapping");
        return -EINVAL;
    }
    return 0;
}

static const struct {
    const char *name;
    field_parser *parse;
} FIELDS[] = {
        {"trustDomain", p_trust_domain},
        {"rootNamespace", p_root_ns},
        {"enableTracing", p_enable_tracing},
        {"extensionProviders", p_extension_providers},
        {"defaultProviders", p_default_providers},
        {"accessLogFile", p_access_log_file},
        {"accessLogEncoding", p_access_log_encoding},
        {"defaultConfig", p_default_config},
};

/* ------------------------------------------------------------------ entry points */

int op_meshconfig_defaults(const char *trust_domain, const char *root_ns,
                           struct op_meshconfig **ret_cfg)
{
    struct op_meshconfig *cfg;
    char why[128];

    if (trust_domain == NULL || root_ns == NULL || root_ns[0] == '\0' ||
        !valid_trust_domain(trust_domain, why, sizeof(why)) ||
        !valid_namespace(root_ns, why, sizeof(why)))
        return -EINVAL;
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL)
        return -ENOMEM;
    cfg->trust_domain = strdup(trust_domain);
    cfg->root_ns = strdup(root_ns);
    cfg->access_log_file = strdup("");
    cfg->extension_providers = json_array();
    cfg->default_providers = json_object();
    cfg->access_log_encoding = OP_ACCESS_LOG_TEXT;
    if (cfg->trust_domain == NULL || cfg->root_ns == NULL || cfg->access_log_file == NULL ||
        cfg->extension_providers == NULL || cfg->default_providers == NULL) {
        op_meshconfig_free(cfg);
        return -ENOMEM;
    }
    *ret_cfg = cfg;
    return 0;
}

int op_meshconfig_parse(const char *data, size_t len, const char *source,
                        const char *trust_domain, const char *root_ns,
                        struct op_meshconfig **ret_cfg, json_t **ret_unknown, char *errbuf,
                        size_t errsz)
{
    struct op_meshconfig *cfg = NULL;
    json_t *docs = NULL, *doc, *unknown = NULL, *v;
    char why[300] = "", field[128] = "";
    const char *k;
    int r;

    if (len > OP_MESHCONFIG_MAX_BYTES) {
        snprintf(errbuf, errsz, "%s: %zu bytes, more than the %u a ConfigMap can hold", source,
                 len, OP_MESHCONFIG_MAX_BYTES);
        return -EFBIG;
    }
    r = op_meshconfig_defaults(trust_domain, root_ns, &cfg);
    if (r < 0) {
        snprintf(errbuf, errsz, "%s: bad defaults (trust domain '%s', root namespace '%s')",
                 source, trust_domain ? trust_domain : "", root_ns ? root_ns : "");
        return r;
    }
    unknown = json_array();
    if (unknown == NULL) {
        r = -ENOMEM;
        goto out;
    }
    r = dp_yaml_parse(data, len, source, &docs, errbuf, errsz);
    if (r < 0)
        goto out;
    r = -EINVAL;
    if (json_array_size(docs) > 1) {
        snprintf(errbuf, errsz, "%s: %zu YAML documents, want one MeshConfig mapping", source,
                 json_array_size(docs));
        goto out;
    }
    doc = json_array_get(docs, 0); /* none (empty input): every default */
    if (doc != NULL && !json_is_null(doc) && !json_is_object(doc)) {
        snprintf(errbuf, errsz, "%s: must be a mapping of MeshConfig fields", source);
        goto out;
    }
    json_object_foreach(doc, k, v) {
        size_t i, n = sizeof(FIELDS) / sizeof(FIELDS[0]);

        for (i = 0; i < n && strcmp(FIELDS[i].name, k) != 0; i++)
            ;
        if (i == n) {
            json_array_append_new(unknown, json_string(k));
            continue;
        }
        if (json_is_null(v))
            continue; /* `field:` with nothing: the default */
        snprintf(field, sizeof(field), "%s", k);
        r = FIELDS[i].parse(cfg, v, field, sizeof(field), why, sizeof(why), unknown);
        if (r == -EINVAL)
            snprintf(errbuf, errsz, "%s: %s: %s", source, field, why);
        if (r < 0)
            goto out;
    }
    *ret_cfg = cfg;
    cfg = NULL;
    if (ret_unknown) {
        *ret_unknown = unknown;
        unknown = NULL;
    }
    r = 0;
out:
    if (r == -ENOMEM)
        snprintf(errbuf, errsz, "%s: out of memory", source);
    op_meshconfig_free(cfg);
    json_decref(unknown);
    json_decref(docs);
    return r;
}

json_t *op_meshconfig_to_json(const struct op_meshconfig *cfg)
{
    return json_pack("{s:s,s:s,s:b,s:O,s:O,s:s,s:s}", "trustDomain", cfg->trust_domain,
                     "rootNamespace", cfg->root_ns, "enableTracing", cfg->enable_tracing,
                     "extensionProviders", cfg->extension_providers, "defaultProviders",
                     cfg->default_providers, "accessLogFile", cfg->access_log_file,
                     "accessLogEncoding", op_access_log_encoding_str(cfg->access_log_encoding));
}

bool op_meshconfig_equal(const struct op_meshconfig *a, const struct op_meshconfig *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a->trust_domain, b->trust_domain) == 0 && strcmp(a->root_ns, b->root_ns) == 0 &&
           a->enable_tracing == b->enable_tracing &&
           strcmp(a->access_log_file, b->access_log_file) == 0 &&
           a->access_log_encoding == b->access_log_encoding &&
           json_equal(a->extension_providers, b->extension_providers) &&
           json_equal(a->default_providers, b->default_providers);
}
