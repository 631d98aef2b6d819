/*
 * meshconfig.h — Istio's MeshConfig (ConfigMap `istio`, key `mesh`, in the operator namespace)
 * parsed into the settings the operator keeps in effect.
 *
 * Honoured fields:
 *   trustDomain        SPIFFE trust domain of workloads and of the certificates the CA issues
 *   rootNamespace      where namespace-less (mesh-wide) policies live
 * Carried (validated, reported in the Mesh status; nothing uses them yet — they are for
 * waypoints and telemetry):
 *   enableTracing, extensionProviders, defaultProviders, accessLogFile, accessLogEncoding
 * Accepted and ignored: defaultConfig (proxy defaults: discoveryAddress, ...).
 * Any other top-level field is reported back as unknown (the caller warns) and ignored: Istio's
 * MeshConfig has many fields that do not apply to ambit.
 *
 * A field that is absent or null keeps its default (trustDomain/rootNamespace: the values the
 * operator was started with; enableTracing false; accessLogFile ""; accessLogEncoding TEXT).
 */
#ifndef OP_MESHCONFIG_H
#define OP_MESHCONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define OP_MESHCONFIG_MAX_BYTES     (1u << 20) /* a ConfigMap holds at most 1 MiB */
#define OP_MESHCONFIG_MAX_PROVIDERS 64

enum op_access_log_encoding {
    OP_ACCESS_LOG_TEXT,
    OP_ACCESS_LOG_JSON,
};

const char *op_access_log_encoding_str(enum op_access_log_encoding e);

struct op_meshconfig {
    char *trust_domain;           /* never empty */
    char *root_ns;                /* never empty */
    bool enable_tracing;
    json_t *extension_providers;  /* array of objects with a unique non-empty "name" */
    json_t *default_providers;    /* {tracing?, metrics?, accessLogging?: [names]} */
    char *access_log_file;        /* "" = off */
    enum op_access_log_encoding access_log_encoding;
};

/** The defaults alone (no ConfigMap). 0 and a new config, or -ENOMEM / -EINVAL (bad defaults). */
int op_meshconfig_defaults(const char *trust_domain, const char *root_ns,
                           struct op_meshconfig **ret_cfg);

/**
 * Parse MeshConfig YAML (or JSON). `source` names the input in errors
 * ("ConfigMap istio-system/istio key mesh"); trust_domain/root_ns are the defaults.
 * Returns 0 and a new config; *ret_unknown (optional) receives a NEW array of the ignored
 * unknown field names ("noSuchField", "defaultProviders.foo"), possibly empty.
 * -EINVAL: errbuf holds "<source>: <field>: <what>" (or the YAML parser's
 * "<source>:<line>:<column>: <what>"); -EFBIG over OP_MESHCONFIG_MAX_BYTES; -ENOMEM.
 */
int op_meshconfig_parse(const char *data, size_t len, const char *source,
                        const char *trust_domain, const char *root_ns,
                        struct op_meshconfig **ret_cfg, json_t **ret_unknown, char *errbuf,
                        size_t errsz);

void op_meshconfig_free(struct op_meshconfig *cfg);

/** As the Mesh status reports it: {trustDomain, rootNamespace, enableTracing,
 *  extensionProviders, defaultProviders, accessLogFile, accessLogEncoding}. NEW. */
json_t *op_meshconfig_to_json(const struct op_meshconfig *cfg);

/** Same content? (NULL equals only NULL) */
bool op_meshconfig_equal(const struct op_meshconfig *a, const struct op_meshconfig *b);

#endif
