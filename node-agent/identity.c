/*
 * identity.c — identity cache + the file CA provider.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509.h>

#include "ca.h"
#include "identity.h"
#include "tls.h"

struct file_ca {
    struct dp_ca *ca;
    unsigned ttl_s;
};

static int file_ca_issue(struct na_identity *self, const char *spiffe, struct dp_identity **ret_id)
{
    struct file_ca *fc = self->priv;
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    STACK_OF(X509) *chain = NULL, *roots = NULL;
    struct dp_identity *id = NULL;
    int ret = dp_ca_issue(fc->ca, spiffe, (int64_t)fc->ttl_s, &key, &leaf);
    if (ret < 0)
        return ret;
    chain = sk_X509_new_null();
    roots = sk_X509_new_null();
    if (!chain || !roots) {
        ret = -ENOMEM;
        goto out;
    }
    sk_X509_push(chain, leaf);
    /* intermediates (if the file CA is itself an intermediate) go in the chain; the last
     * cert of the CA's chain (or the CA itself) is the trust root */
    X509 *root = fc->ca->cert;
    if (fc->ca->chain && sk_X509_num(fc->ca->chain) > 0) {
        sk_X509_push(chain, fc->ca->cert);
        int n = sk_X509_num(fc->ca->chain);
        for (int i = 0; i < n - 1; i++)
            sk_X509_push(chain, sk_X509_value(fc->ca->chain, i));
        root = sk_X509_value(fc->ca->chain, n - 1);
    }
    sk_X509_push(roots, root);
    ret = dp_identity_new(key, chain, roots, &id, NULL);
    if (ret < 0)
        goto out;
    *ret_id = id;
    ret = 0;
out:
    sk_X509_free(chain); /* borrowed entries: dp_identity_new took its own references */
    sk_X509_free(roots);
    X509_free(leaf);
    EVP_PKEY_free(key);
    return ret;
}

static void file_ca_free(struct na_identity *self)
{
    struct file_ca *fc = self->priv;
    if (!fc)
        return;
    dp_ca_free(fc->ca);
    free(fc);
}

static const struct na_identity_ops file_ca_ops = {
        .name = "file-ca",
        .issue = file_ca_issue,
        .free = file_ca_free,
};

int na_identity_file_ca_new(const char *ca_cert, const char *ca_key, unsigned ttl_s,
                            struct na_identity **ret_idp)
{
    struct na_identity *idp = calloc(1, sizeof(*idp));
    struct file_ca *fc = calloc(1, sizeof(*fc));
    int ret = -ENOMEM;
    if (!idp || !fc)
        goto fail;
    ret = dp_ca_load_files(ca_key, ca_cert, NULL, &fc->ca);
    if (ret < 0)
        goto fail;
    ret = dp_idstore_new(&idp->store);
    if (ret < 0)
        goto fail;
    fc->ttl_s = ttl_s ? ttl_s : 86400;
    pthread_mutex_init(&idp->issue_mu, NULL);
    idp->ops = &file_ca_ops;
    idp->priv = fc;
    *ret_idp = idp;
    return 0;
fail:
    if (fc)
        dp_ca_free(fc->ca);
    free(fc);
    if (idp)
        dp_idstore_free(idp->store);
    free(idp);
    return ret;
}

static bool past_half_life(const struct dp_identity *id, int64_t now)
{
    int64_t nb = dp_identity_not_before(id), na = dp_identity_not_after(id);
    return now >= nb + (na - nb) / 2;
}

int na_identity_get(struct na_identity *idp, const char *spiffe, struct dp_identity **ret_id)
{
    struct dp_identity *id = NULL;
    int64_t now = (int64_t)time(NULL);
    if (dp_idstore_get(idp->store, spiffe, &id) == 0) {
        if (!past_half_life(id, now)) {
            *ret_id = id;
            return 0;
        }
    }
    /* issue (or renew); keep the old one if issuing fails and it is still valid */
    pthread_mutex_lock(&idp->issue_mu);
    struct dp_identity *again = NULL;
    if (dp_idstore_get(idp->store, spiffe, &again) == 0 && !past_half_life(again, now)) {
        pthread_mutex_unlock(&idp->issue_mu);
        dp_identity_unref(id);
        *ret_id = again;
        return 0;
    }
    dp_identity_unref(again);
    struct dp_identity *fresh = NULL;
    int ret = idp->ops->issue(idp, spiffe, &fresh);
    if (ret == 0)
        ret = dp_idstore_put(idp->store, fresh);
    pthread_mutex_unlock(&idp->issue_mu);
    if (ret < 0) {
        dp_identity_unref(fresh);
        if (id && !dp_identity_expired(id, now)) {
            *ret_id = id;
            return 0;
        }
        dp_identity_unref(id);
        return ret;
    }
    dp_identity_unref(id);
    *ret_id = fresh;
    return 0;
}

void na_identity_free(struct na_identity *idp)
{
    if (!idp)
        return;
    if (idp->ops && idp->ops->free)
        idp->ops->free(idp);
    dp_idstore_free(idp->store);
    pthread_mutex_destroy(&idp->issue_mu);
    free(idp);
}
