/*
 * identity.h — where the node agent gets a key + certificate for each SPIFFE identity it
 * serves. A provider is a table of function pointers; today there is the file CA provider
 * (the agent holds a CA cert + key and issues leaves itself, for tests and dev). The operator
 * CSR client plugs in behind the same interface later.
 *
 * Thread-safe: any worker may call na_identity_get(); issued identities are cached in a
 * dp_idstore and re-issued at half-life.
 */
#ifndef NA_IDENTITY_H
#define NA_IDENTITY_H

#include <pthread.h>
#include <stdint.h>

struct dp_identity;
struct dp_idstore;
struct na_identity;

struct na_identity_ops {
    const char *name;
    /** Issue fresh key material for `spiffe`. 0 and a new reference, or -errno. */
    int (*issue)(struct na_identity *self, const char *spiffe, struct dp_identity **ret_id);
    void (*free)(struct na_identity *self);
};

struct na_identity {
    const struct na_identity_ops *ops;
    struct dp_idstore *store;
    pthread_mutex_t issue_mu; /* serialises issuing so one identity is issued once */
    void *priv;
};

/** File CA provider: CA key + cert PEM files; leaves valid for ttl_s. 0 or -errno. */
int na_identity_file_ca_new(const char *ca_cert, const char *ca_key, unsigned ttl_s,
                            struct na_identity **ret_idp);

/** Current identity for `spiffe` (issued on first use, renewed past half-life). New
 *  reference, or -errno (provider failure). */
int na_identity_get(struct na_identity *idp, const char *spiffe, struct dp_identity **ret_id);

void na_identity_free(struct na_identity *idp);

#endif
