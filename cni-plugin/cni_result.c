/*
 * cni_result.c — the one place where internal errors become CNI spec error codes.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cni_result.h"

const char *const cni_supported_versions[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", NULL};

enum cni_code cni_err_code(enum cni_stage stage, int err)
{
    if (err == -ENOMEM)
        return CNI_ERR_INTERNAL;
    switch (stage) {
    case CNI_STAGE_ENV:
        return CNI_ERR_INVALID_ENV;
    case CNI_STAGE_DECODE:
        return CNI_ERR_DECODE;
    case CNI_STAGE_CONFIG:
        return CNI_ERR_INVALID_CONFIG;
    case CNI_STAGE_VERSION:
        return CNI_ERR_INCOMPATIBLE_VERSION;
    case CNI_STAGE_NETNS:
        /* a netns that does not exist or is not one: the container is gone / unknown */
        if (err == -ENOENT || err == -EINVAL || err == -ENOTDIR)
            return CNI_ERR_UNKNOWN_CONTAINER;
        return CNI_ERR_IO;
    case CNI_STAGE_KUBE:
        /* API server slow, down or not letting us in yet: the runtime retries ADD */
        return CNI_ERR_TRY_AGAIN;
    case CNI_STAGE_AGENT:
        /* unreachable / timed out / busy: transient, fail closed and let the runtime retry;
         * a definite "no" from a working agent is ours */
        if (err == -EPERM || err == -EACCES || err == -EPROTO || err == -EBADMSG)
            return CNI_ERR_AGENT_REFUSED;
        return CNI_ERR_TRY_AGAIN;
    case CNI_STAGE_RULES:
        return CNI_ERR_REDIRECT;
    case CNI_STAGE_IO:
        return CNI_ERR_IO;
    }
    return CNI_ERR_INTERNAL;
}

const char *cni_code_str(enum cni_code code)
{
    switch (code) {
    case CNI_OK:
        return "ok";
    case CNI_ERR_INCOMPATIBLE_VERSION:
        return "incompatible CNI version";
    case CNI_ERR_UNSUPPORTED_FIELD:
        return "unsupported field in network configuration";
    case CNI_ERR_UNKNOWN_CONTAINER:
        return "container unknown or does not exist";
    case CNI_ERR_INVALID_ENV:
        return "invalid necessary environment variables";
    case CNI_ERR_IO:
        return "I/O failure";
    case CNI_ERR_DECODE:
        return "failed to decode content";
    case CNI_ERR_INVALID_CONFIG:
        return "invalid network config";
    case CNI_ERR_TRY_AGAIN:
        return "try again later";
    case CNI_ERR_NOT_AVAILABLE:
        return "plugin not available";
    case CNI_ERR_AGENT_REFUSED:
        return "node agent refused the pod";
    case CNI_ERR_REDIRECT:
        return "traffic redirection failed";
    case CNI_ERR_INTERNAL:
        return "internal error";
    }
    return "unknown";
}

int cni_fail(struct cni_error *e, enum cni_code code, const char *details, const char *fmt, ...)
{
    va_list ap;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    snprintf(e->details, sizeof(e->details), "%s", details ? details : "");
    return -1;
}

int cni_fail_errno(struct cni_error *e, enum cni_stage stage, int err, const char *fmt, ...)
{
    va_list ap;
    e->code = cni_err_code(stage, err);
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    snprintf(e->details, sizeof(e->details), "%s", strerror(err < 0 ? -err : err));
    return -1;
}

json_t *cni_error_json(const struct cni_error *e, const char *cni_version)
{
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    json_object_set_new(o, "cniVersion", json_string(cni_version ? cni_version : "1.1.0"));
    json_object_set_new(o, "code", json_integer(e->code));
    json_object_set_new(o, "msg", json_string(e->msg));
    if (e->details[0])
        json_object_set_new(o, "details", json_string(e->details));
    return o;
}

int cni_error_print(FILE *out, const struct cni_error *e, const char *cni_version)
{
    json_t *o = cni_error_json(e, cni_version);
    if (o) {
        json_dumpf(o, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', out);
        json_decref(o);
    }
    fflush(out);
    return 1;
}

/* "1.10.2" -> parts; returns -1 on anything else */
static int parse_version(const char *v, long out[3])
{
    const char *p = v;
    if (v == NULL)
        return -1;
    for (int i = 0; i < 3; i++) {
        char *end;
        if (*p < '0' || *p > '9')
            return -1;
        out[i] = strtol(p, &end, 10);
        if (end - p > 6)
            return -1;
        p = end;
        if (i < 2) {
            if (*p != '.')
                return -1;
            p++;
        }
    }
    return *p == '\0' ? 0 : -1;
}

int cni_version_cmp(const char *a, const char *b)
{
    long x[3], y[3];
    int ra = parse_version(a, x), rb = parse_version(b, y);
    if (ra < 0 || rb < 0)
        return ra - rb;
    for (int i = 0; i < 3; i++)
        if (x[i] != y[i])
            return x[i] < y[i] ? -1 : 1;
    return 0;
}

int cni_version_supported(const char *v)
{
    if (v == NULL)
        return 0;
    for (int i = 0; cni_supported_versions[i]; i++)
        if (strcmp(v, cni_supported_versions[i]) == 0)
            return 1;
    return 0;
}

json_t *cni_version_json(const char *cni_version)
{
    json_t *o = json_object(), *a = json_array();
    if (o == NULL || a == NULL) {
        json_decref(o);
        json_decref(a);
        return NULL;
    }
    for (int i = 0; cni_supported_versions[i]; i++)
        json_array_append_new(a, json_string(cni_supported_versions[i]));
    json_object_set_new(o, "cniVersion", json_string(cni_version ? cni_version : "1.1.0"));
    json_object_set_new(o, "supportedVersions", a);
    return o;
}
