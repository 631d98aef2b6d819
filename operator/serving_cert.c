/*
 * serving_cert.c — the operator's own TLS serving certificate. See serving_cert.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "serving_cert.h"

int op_serving_times(int64_t now, int64_t ttl_s, int64_t ca_not_after,
                     struct op_serving_times *ret_times)
{
    int64_t life;

    if (ttl_s < 3 || ca_not_after - now < 3)
        return -EINVAL;
    life = ttl_s < ca_not_after - now ? ttl_s : ca_not_after - now;
    ret_times->not_before = now - 60;
    ret_times->not_after = now + life;
    ret_times->renew_at = now + life * 2 / 3;
    return 0;
}

int op_serving_sans(const char *ns, char *buf, size_t bufsz)
{
    int n = snprintf(buf, bufsz,
                     "DNS:istiod.%s.svc,DNS:istiod.%s.svc.cluster.local,DNS:istiod.%s,DNS:istiod,"
                     "DNS:ambit-operator.%s.svc,DNS:ambit-operator.%s.svc.cluster.local,"
                     "DNS:ambit-operator.%s,DNS:ambit-operator,DNS:localhost,IP:127.0.0.1",
                     ns, ns, ns, ns, ns, ns);

    return n < 0 || (size_t)n >= bufsz ? -ENAMETOOLONG : 0;
}

static int64_t asn1_unix(const ASN1_TIME *t)
{
    struct tm tm;

    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* a random positive 128-bit serial (RFC 5280: unique per issuer, at most 20 octets) */
static int set_serial(X509 *cert)
{
    unsigned char raw[16];
    BIGNUM *bn = NULL;
    int r = -EIO;

    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return -EIO;
    raw[0] &= 0x7f;
    raw[0] |= 0x01; /* never zero, never negative */
    bn = BN_bin2bn(raw, sizeof(raw), NULL);
    if (bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != NULL)
        r = 0;
    BN_free(bn);
    return r;
}

static int add_ext(X509 *cert, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, v3, nid, value);
    int ok;

    if (ext == NULL)
        return -EINVAL;
    ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok == 1 ? 0 : -ENOMEM;
}

int op_serving_ctx_new(const struct op_ca *ca, const char *ns, int64_t ttl_s, int64_t now,
                       SSL_CTX **ret_ctx, int64_t *ret_renew_at)
{
    struct op_serving_times t;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    SSL_CTX *ctx = NULL;
    X509V3_CTX v3;
    char san[1024];
    int r;

    r = op_serving_times(now, ttl_s, asn1_unix(X509_get0_notAfter(ca->ca->cert)), &t);
    if (r < 0)
        return r;
    r = op_serving_sans(ns, san, sizeof(san));
    if (r < 0)
        return r;
    r = dp_ca_key_new(&key);
    if (r < 0)
        return r;
    r = -ENOMEM;
    cert = X509_new();
    if (cert == NULL)
        goto out;
    r = -EIO;
    if (X509_set_version(cert, 2) != 1 || set_serial(cert) < 0 ||
        ASN1_TIME_set(X509_getm_notBefore(cert), (time_t)t.not_before) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(cert), (time_t)t.not_after) == NULL ||
        X509_set_pubkey(cert, key) != 1 ||
        X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "O", MBSTRING_ASC,
                                   (const unsigned char *)"ambit", -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                                   (const unsigned char *)"istiod", -1, -1, 0) != 1 ||
        X509_set_issuer_name(cert, X509_get_subject_name(ca->ca->cert)) != 1)
        goto out;
    X509V3_set_ctx(&v3, ca->ca->cert, cert, NULL, NULL, 0);
    if ((r = add_ext(cert, &v3, NID_subject_alt_name, san)) < 0 ||
        (r = add_ext(cert, &v3, NID_basic_constraints, "critical,CA:FALSE")) < 0 ||
        (r = add_ext(cert, &v3, NID_key_usage, "critical,digitalSignature,keyEncipherment")) < 0 ||
        (r = add_ext(cert, &v3, NID_ext_key_usage, "serverAuth")) < 0 ||
        (r = add_ext(cert, &v3, NID_authority_key_identifier, "keyid")) < 0)
        goto out;
    r = -EIO;
    if (X509_sign(cert, ca->ca->key, EVP_sha256()) <= 0)
        goto out;
    r = -ENOMEM;
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        goto out;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    r = -EIO;
    if (SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1)
        goto out;
    /* the chain up to (not including) a self-signed root */
    if (X509_check_issued(ca->ca->cert, ca->ca->cert) != X509_V_OK &&
        SSL_CTX_add1_chain_cert(ctx, ca->ca->cert) != 1)
        goto out;
    for (int i = 0; ca->ca->chain && i < sk_X509_num(ca->ca->chain); i++) {
        X509 *x = sk_X509_value(ca->ca->chain, i);

        if (X509_check_issued(x, x) != X509_V_OK && SSL_CTX_add1_chain_cert(ctx, x) != 1)
            goto out;
    }
    *ret_ctx = ctx;
    ctx = NULL;
    if (ret_renew_at != NULL)
        *ret_renew_at = t.renew_at;
    r = 0;
out:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    X509_free(cert);
    EVP_PKEY_free(key);
    return r;
}
