/*
 * tls_fixture.h — shared test helpers: identities issued by a throw-away CA, and a
 * socketpair handshake driver. Header-only (static functions) so each test binary includes it.
 */
#ifndef DP_TEST_TLS_FIXTURE_H
#define DP_TEST_TLS_FIXTURE_H

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ca.h"
#include "tls.h"

/* Identity for `uri` signed by `ca`, valid [now+nb_off, now+na_off]. NULL on failure. */
static inline struct dp_identity *fx_identity(const struct dp_ca *ca, const char *uri,
                                              int64_t nb_off, int64_t na_off)
{
    EVP_PKEY *key = NULL;
    X509_REQ *csr = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null(), *roots = sk_X509_new_null();
    struct dp_identity *id = NULL;
    int64_t now = (int64_t)time(NULL);

    if (dp_ca_key_new(&key) < 0 || dp_ca_csr_new(key, uri, &csr) < 0 ||
        dp_ca_sign_csr(ca, csr, now + nb_off, now + na_off, &cert) < 0)
        goto out;
    sk_X509_push(chain, cert);
    cert = NULL;
    if (ca->chain != NULL) {
        X509_add_cert(chain, ca->cert, X509_ADD_FLAG_UP_REF);
        X509_add_certs(chain, ca->chain, X509_ADD_FLAG_UP_REF);
        X509_add_cert(roots, sk_X509_value(ca->chain, sk_X509_num(ca->chain) - 1),
                      X509_ADD_FLAG_UP_REF);
    } else {
        X509_add_cert(roots, ca->cert, X509_ADD_FLAG_UP_REF);
    }
    if (dp_identity_new(key, chain, roots, &id, NULL) < 0)
        id = NULL;
out:
    EVP_PKEY_free(key);
    X509_REQ_free(csr);
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(roots, X509_free);
    return id;
}

static inline void fx_nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* Drive both handshakes over a connected pair until neither wants more. Returns rc of each.
 * A side that finished waits for the peer; max 1000 rounds. */
static inline void fx_handshake_pair(struct dp_tls *c, struct dp_tls *s, int *ret_c, int *ret_s)
{
    int rc = -EAGAIN, rs = -EAGAIN;
    for (int i = 0; i < 1000 && (rc == -EAGAIN || rs == -EAGAIN); i++) {
        if (rc == -EAGAIN)
            rc = dp_tls_handshake(c);
        if (rs == -EAGAIN)
            rs = dp_tls_handshake(s);
    }
    *ret_c = rc;
    *ret_s = rs;
}

#endif
