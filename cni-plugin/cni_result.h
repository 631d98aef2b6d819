/*
 * cni_result.h — the CNI spec's error codes and result/error output, in one place.
 *
 * Every failure of the plugin becomes exactly one spec-shaped JSON error on stdout
 * ({"cniVersion", "code", "msg", "details"}) and a non-zero exit. Internal code returns -errno
 * plus a message; cni_err_code() decides which spec code that is, given what was being done.
 */
#ifndef CNI_RESULT_H
#define CNI_RESULT_H

#include <stdio.h>

#include <jansson.h>

/* CNI SPEC "Error" section; 100+ are ours. */
enum cni_code {
    CNI_OK = 0,
    CNI_ERR_INCOMPATIBLE_VERSION = 1,
    CNI_ERR_UNSUPPORTED_FIELD = 2,
    CNI_ERR_UNKNOWN_CONTAINER = 3,
    CNI_ERR_INVALID_ENV = 4,
    CNI_ERR_IO = 5,
    CNI_ERR_DECODE = 6,
    CNI_ERR_INVALID_CONFIG = 7,
    CNI_ERR_TRY_AGAIN = 11,
    CNI_ERR_NOT_AVAILABLE = 50,
    CNI_ERR_AGENT_REFUSED = 100, /* the node agent answered but would not adopt the pod */
    CNI_ERR_REDIRECT = 101,      /* redirection rules could not be installed / are missing */
    CNI_ERR_INTERNAL = 102,
};

/** What the plugin was doing when an -errno came back; selects the spec code. */
enum cni_stage {
    CNI_STAGE_ENV,      /* reading CNI_* variables */
    CNI_STAGE_DECODE,   /* parsing stdin JSON */
    CNI_STAGE_CONFIG,   /* validating the config / prevResult */
    CNI_STAGE_VERSION,  /* cniVersion checks */
    CNI_STAGE_NETNS,    /* opening the container's netns */
    CNI_STAGE_KUBE,     /* API server lookup */
    CNI_STAGE_AGENT,    /* talking to the node agent */
    CNI_STAGE_RULES,    /* installing / checking rules */
    CNI_STAGE_IO,       /* files of our own (state, install) */
};

/** Map (stage, -errno) to a spec code. */
enum cni_code cni_err_code(enum cni_stage stage, int err);

/** Short name of a code ("Incompatible CNI version", ...), for logs. */
const char *cni_code_str(enum cni_code code);

/** An error being returned: code + message (+ details). */
struct cni_error {
    enum cni_code code;
    char msg[512];
    char details[1024];
};

/** Fill e (msg from fmt, details plain, may be NULL) and return -1, so callers can write
 *  `return cni_fail(e, ...)`. */
int cni_fail(struct cni_error *e, enum cni_code code, const char *details, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/** Same, with the code from cni_err_code(stage, err) and strerror(-err) as details; -1. */
int cni_fail_errno(struct cni_error *e, enum cni_stage stage, int err, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/** The error as a NEW JSON object. cni_version may be NULL (then "1.1.0"). */
json_t *cni_error_json(const struct cni_error *e, const char *cni_version);

/** Print the error JSON on `out`. Returns the exit status to use (1). */
int cni_error_print(FILE *out, const struct cni_error *e, const char *cni_version);

/* ---- versions */

extern const char *const cni_supported_versions[]; /* NULL-terminated */

/** Compare dotted versions "0.3.1" < "1.0.0": <0, 0, >0. Unparsable sorts lowest. */
int cni_version_cmp(const char *a, const char *b);
/** 1 if `v` is one of the supported versions, else 0. */
int cni_version_supported(const char *v);

/** VERSION command output (NEW). */
json_t *cni_version_json(const char *cni_version);

#endif
