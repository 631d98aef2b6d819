/* Skeleton: implementation in progress; every entry point returns -ENOSYS. */
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "tls.h"
#include <errno.h>

int dp_spiffe_parse(const char *uri, size_t len, struct dp_spiffe_id *ret_id, const char **ret_err)
{
    return -ENOSYS;
}

int dp_spiffe_format(const struct dp_spiffe_id *id, char *out, size_t outsz)
{
    return -ENOSYS;
}

bool dp_spiffe_in_trust_domain(const char *uri, size_t len, const char *td)
{
    return false;
}

int dp_identity_new(EVP_PKEY *key, STACK_OF(X509) *chain, STACK_OF(X509) *roots,
                    struct dp_identity **ret_id, const char **ret_err)
{
    return -ENOSYS;
}

int dp_identity_from_pem(const char *key_pem, size_t key_len, const char *chain_pem,
                         size_t chain_len, const char *roots_pem, size_t roots_len,
                         struct dp_identity **ret_id, const char **ret_err)
{
    return -ENOSYS;
}

int dp_identity_load_files(const char *key_path, const char *chain_path, const char *roots_path,
                           struct dp_identity **ret_id, const char **ret_err)
{
    return -ENOSYS;
}

struct dp_identity *dp_identity_ref(struct dp_identity *id)
{
    return NULL;
}

void dp_identity_unref(struct dp_identity *id)
{
    
}

const char *dp_identity_name(const struct dp_identity *id)
{
    return "";
}

const char *dp_identity_trust_domain(const struct dp_identity *id)
{
    return "";
}

int64_t dp_identity_not_before(const struct dp_identity *id)
{
    return 0;
}

int64_t dp_identity_not_after(const struct dp_identity *id)
{
    return 0;
}

bool dp_identity_expired(const struct dp_identity *id, int64_t now)
{
    return false;
}

const char *dp_identity_serial(const struct dp_identity *id)
{
    return "";
}

const char *dp_identity_chain_pem(const struct dp_identity *id)
{
    return "";
}

const char *dp_identity_roots_pem(const struct dp_identity *id)
{
    return "";
}

int dp_idstore_new(struct dp_idstore **ret_store)
{
    return -ENOSYS;
}

void dp_idstore_free(struct dp_idstore *store)
{
    
}

int dp_idstore_put(struct dp_idstore *store, struct dp_identity *id)
{
    return -ENOSYS;
}

int dp_idstore_get(struct dp_idstore *store, const char *spiffe, struct dp_identity **ret_id)
{
    return -ENOSYS;
}

int dp_idstore_remove(struct dp_idstore *store, const char *spiffe)
{
    return -ENOSYS;
}

void dp_idstore_foreach(struct dp_idstore *store, dp_idstore_cb *cb, void *arg)
{
    
}

int dp_tls_new(struct dp_identity *id, enum dp_tls_role role, int fd,
               const char *const *expected_sans, unsigned n_sans, struct dp_tls **ret_tls)
{
    return -ENOSYS;
}

void dp_tls_free(struct dp_tls *tls)
{
    
}

int dp_tls_handshake(struct dp_tls *tls)
{
    return -ENOSYS;
}

ssize_t dp_tls_read(struct dp_tls *tls, void *buf, size_t len)
{
    return -ENOSYS;
}

ssize_t dp_tls_write(struct dp_tls *tls, const void *buf, size_t len)
{
    return -ENOSYS;
}

int dp_tls_shutdown(struct dp_tls *tls)
{
    return -ENOSYS;
}

unsigned dp_tls_want(const struct dp_tls *tls)
{
    return 0;
}

bool dp_tls_pending(const struct dp_tls *tls)
{
    return false;
}

const char *dp_tls_error(const struct dp_tls *tls)
{
    return "";
}

const char *dp_tls_peer_id(const struct dp_tls *tls)
{
    return "";
}

struct dp_identity *dp_tls_identity(const struct dp_tls *tls)
{
    return NULL;
}

SSL *dp_tls_ssl(const struct dp_tls *tls)
{
    return NULL;
}

