/*
 * mesh_internal.h — helpers shared by mesh.c, mesh_decode.c and mesh_snapshot.c. Not part of
 * the contract: other modules include mesh.h only.
 */
#ifndef DP_MESH_INTERNAL_H
#define DP_MESH_INTERNAL_H

#include <stddef.h>

#include <jansson.h>

#include "json.h"
#include "mesh.h"

/* decoding context: the JSON path so far and the first error */
struct dp_mesh_dctx {
    struct dp_jpath p;
    struct dp_jerr e;
};

#define PUSHK(c, k) dp_jpath_push_key(&(c)->p, (k))
#define PUSHI(c, i) dp_jpath_push_index(&(c)->p, (i))
#define POP(c)      dp_jpath_pop(&(c)->p)

/** Record "<path>[.key]: <message>" in c->e; returns -EINVAL. */
int dp_mesh_fail(struct dp_mesh_dctx *c, const char *key, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/** Decode one object of `kind` (see dp_mesh_object_decode); errors in c->e. */
int dp_mesh_decode_any(struct dp_mesh_dctx *c, enum dp_mesh_kind kind, const json_t *json,
                       const char *key, void **ret_obj);

/** snprintf into errbuf when errbuf/errsz are usable. */
void dp_mesh_set_err(char *errbuf, size_t errsz, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/** IPv4-mapped IPv6 -> IPv4, in place. */
void dp_mesh_ip_normalise(struct dp_mesh_ip *ip);

#endif
