/*
 * ca.c — X.509 issuing for workload identities (see ca.h).
 *
 * Leaf certificates follow what Istio's CA issues: empty subject, one URI SAN marked
 * critical (RFC 5280 §4.2.1.6 requires that when the subject is empty), EC P-256 keys,
 * SHA-256 signatures, random 128-bit serials.
 */
#include "ca.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define CSR_PEM_MAX (64u * 1024)
#define URI_MAX     2048

int dp_ca_key_new(EVP_PKEY **ret_key)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (key == NULL) {
        ERR_clear_error();
        return -EIO;
    }
    *ret_key = key;
    return 0;
}

static int set_random_serial(X509 *x)
{
    unsigned char raw[16];
    BIGNUM *bn = NULL;
    int r = -EIO;

    if (RAND_bytes(raw, sizeof(raw)) != 1)
        goto out;
    raw[0] &= 0x7f; /* positive */
    raw[0] |= 0x01; /* and never a short encoding */
    bn = BN_bin2bn(raw, sizeof(raw), NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
        goto out;
    r = 0;
out:
    BN_free(bn);
    return r;
}

static int add_ext(X509 *issuer, X509 *subject, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, subject, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ext == NULL) {
        ERR_clear_error();
        return -EINVAL;
    }
    int ok = X509_add_ext(subject, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -ENOMEM;
}

static int set_validity(X509 *x, int64_t not_before, int64_t not_after)
{
    if (ASN1_TIME_set(X509_getm_notBefore(x), (time_t)not_before) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after) == NULL)
        return -EINVAL;
    return 0;
}

/* A subjectAltName extension holding exactly one URI, built field by field: never through
 * OpenSSL's config-string parser, where a ',' in a peer's URI would add more names. */
static X509_EXTENSION *uri_san_ext(const char *uri, int critical)
{
    GENERAL_NAMES *names = GENERAL_NAMES_new();
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    X509_EXTENSION *ext = NULL;

    if (names == NULL || gn == NULL || ia5 == NULL || !ASN1_STRING_set(ia5, uri, (int)strlen(uri)))
        goto out;
    GENERAL_NAME_set0_value(gn, GEN_URI, ia5);
    ia5 = NULL;
    if (!sk_GENERAL_NAME_push(names, gn))
        goto out;
    gn = NULL;
    ext = X509V3_EXT_i2d(NID_subject_alt_name, critical, names);
out:
    ASN1_IA5STRING_free(ia5);
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(names);
    return ext;
}

/* URIs we put into certificates: 1..URI_MAX printable ASCII bytes, no spaces. */
static bool uri_ok(const char *uri, size_t len)
{
    if (len == 0 || len > URI_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)uri[i] <= 0x20 || (unsigned char)uri[i] >= 0x7f)
            return false;
    return true;
}

/* Self-signed when parent == NULL. */
static int make_ca(const struct dp_ca *parent, const char *org, unsigned days,
                   struct dp_ca **ret_ca)
{
    struct dp_ca *ca = NULL;
    X509_NAME *name;
    int64_t now = (int64_t)time(NULL);
    int r;

    if (org == NULL || *org == '\0' || days == 0)
        return -EINVAL;
    ca = calloc(1, sizeof(*ca));
    if (ca == NULL)
        return -ENOMEM;
    r = dp_ca_key_new(&ca->key);
    if (r < 0)
        goto fail;
    r = -ENOMEM;
    ca->cert = X509_new();
    if (ca->cert == NULL)
        goto fail;
    X509_set_version(ca->cert, 2);
    r = set_random_serial(ca->cert);
    if (r < 0)
        goto fail;
    r = set_validity(ca->cert, now - 60, now + (int64_t)days * 86400);
    if (r < 0)
        goto fail;
    name = X509_get_subject_name(ca->cert);
    r = -EINVAL;
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)org, -1, -1,
                                    0))
        goto fail;
    if (!X509_set_issuer_name(ca->cert, parent ? X509_get_subject_name(parent->cert) : name))
        goto fail;
    if (!X509_set_pubkey(ca->cert, ca->key))
        goto fail;
    X509 *issuer = parent ? parent->cert : ca->cert;
    if ((r = add_ext(issuer, ca->cert, NID_basic_constraints, "critical,CA:TRUE")) < 0 ||
        (r = add_ext(issuer, ca->cert, NID_key_usage, "critical,keyCertSign,cRLSign")) < 0 ||
        (r = add_ext(issuer, ca->cert, NID_subject_key_identifier, "hash")) < 0)
        goto fail;
    if (parent != NULL &&
        (r = add_ext(issuer, ca->cert, NID_authority_key_identifier, "keyid:always")) < 0)
        goto fail;
    r = -EIO;
    if (X509_sign(ca->cert, parent ? parent->key : ca->key, EVP_sha256()) <= 0)
        goto fail;
    if (parent != NULL) {
        r = -ENOMEM;
        ca->chain = sk_X509_new_null();
        if (ca->chain == NULL || !X509_add_cert(ca->chain, parent->cert, X509_ADD_FLAG_UP_REF))
            goto fail;
        if (parent->chain != NULL &&
            !X509_add_certs(ca->chain, parent->chain, X509_ADD_FLAG_UP_REF))
            goto fail;
    }
    *ret_ca = ca;
    return 0;
fail:
    ERR_clear_error();
    dp_ca_free(ca);
    return r;
}

int dp_ca_new_root(const char *org, unsigned days, struct dp_ca **ret_ca)
{
    return make_ca(NULL, org, days, ret_ca);
}

int dp_ca_new_intermediate(const struct dp_ca *parent, const char *org, unsigned days,
                           struct dp_ca **ret_ca)
{
    if (parent == NULL)
        return -EINVAL;
    return make_ca(parent, org, days, ret_ca);
}

void dp_ca_free(struct dp_ca *ca)
{
    if (ca == NULL)
        return;
    EVP_PKEY_free(ca->key);
    X509_free(ca->cert);
    sk_X509_pop_free(ca->chain, X509_free);
    free(ca);
}

static BIO *open_file_bio(const char *path, int *ret_err)
{
    BIO *b = BIO_new_file(path, "r");
    if (b == NULL) {
        *ret_err = errno ? -errno : -ENOENT;
        ERR_clear_error();
    }
    return b;
}

int dp_ca_load_files(const char *key_path, const char *cert_path, const char *chain_path,
                     struct dp_ca **ret_ca)
{
    struct dp_ca *ca;
    BIO *b = NULL;
    int r = -ENOMEM;

    ca = calloc(1, sizeof(*ca));
    if (ca == NULL)
        return -ENOMEM;
    if ((b = open_file_bio(key_path, &r)) == NULL)
        goto fail;
    ca->key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    r = -EINVAL;
    if (ca->key == NULL)
        goto fail;
    if ((b = open_file_bio(cert_path, &r)) == NULL)
        goto fail;
    ca->cert = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    r = -EINVAL;
    if (ca->cert == NULL || X509_check_private_key(ca->cert, ca->key) != 1)
        goto fail;
    if (chain_path != NULL) {
        X509 *x;
        if ((b = open_file_bio(chain_path, &r)) == NULL)
            goto fail;
        r = -ENOMEM;
        ca->chain = sk_X509_new_null();
        if (ca->chain == NULL) {
            BIO_free(b);
            goto fail;
        }
        while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
            if (!sk_X509_push(ca->chain, x)) {
                X509_free(x);
                BIO_free(b);
                goto fail;
            }
        }
        BIO_free(b);
    }
    ERR_clear_error();
    *ret_ca = ca;
    return 0;
fail:
    ERR_clear_error();
    dp_ca_free(ca);
    return r;
}

int dp_ca_csr_new(EVP_PKEY *key, const char *uri, X509_REQ **ret_csr)
{
    X509_REQ *req = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    X509_EXTENSION *ext = NULL;
    int r = -EINVAL;

    if (key == NULL || uri == NULL || !uri_ok(uri, strlen(uri)))
        return -EINVAL;
    r = -ENOMEM;
    req = X509_REQ_new();
    exts = sk_X509_EXTENSION_new_null();
    if (req == NULL || exts == NULL)
        goto out;
    X509_REQ_set_version(req, 0);
    r = -EINVAL;
    if (!X509_REQ_set_pubkey(req, key))
        goto out;
    ext = uri_san_ext(uri, 0);
    if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext))
        goto out;
    ext = NULL;
    if (!X509_REQ_add_extensions(req, exts))
        goto out;
    r = -EIO;
    if (X509_REQ_sign(req, key, EVP_sha256()) <= 0)
        goto out;
    *ret_csr = req;
    req = NULL;
    r = 0;
out:
    ERR_clear_error();
    X509_EXTENSION_free(ext);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_REQ_free(req);
    return r;
}

/* The single URI of a GENERAL_NAMES list, or NULL when the list is not exactly one URI. */
static int single_uri(const GENERAL_NAMES *names, char **ret_uri)
{
    const GENERAL_NAME *gn;
    const unsigned char *p;
    int len;
    char *s;

    if (names == NULL || sk_GENERAL_NAME_num(names) != 1)
        return -EINVAL;
    gn = sk_GENERAL_NAME_value(names, 0);
    if (gn->type != GEN_URI)
        return -EINVAL;
    p = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
    len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
    if (len <= 0 || !uri_ok((const char *)p, (size_t)len))
        return -EINVAL;
    s = strndup((const char *)p, (size_t)len);
    if (s == NULL)
        return -ENOMEM;
    *ret_uri = s;
    return 0;
}

int dp_ca_csr_uri(X509_REQ *csr, char **ret_uri)
{
    STACK_OF(X509_EXTENSION) *exts = NULL;
    GENERAL_NAMES *names = NULL;
    EVP_PKEY *pub;
    int r = -EINVAL;

    if (csr == NULL)
        return -EINVAL;
    pub = X509_REQ_get0_pubkey(csr);
    if (pub == NULL) {
        ERR_clear_error();
        return -EINVAL;
    }
    if (X509_REQ_verify(csr, pub) != 1) {
        ERR_clear_error();
        return -EBADMSG;
    }
    exts = X509_REQ_get_extensions(csr);
    if (exts != NULL) {
        /* exactly one SAN extension */
        int idx = X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1);
        if (idx >= 0 && X509v3_get_ext_by_NID(exts, NID_subject_alt_name, idx) < 0)
            names = X509V3_EXT_d2i(sk_X509_EXTENSION_value(exts, idx));
    }
    r = single_uri(names, ret_uri);
    GENERAL_NAMES_free(names);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    ERR_clear_error();
    return r;
}

int dp_ca_sign_csr(const struct dp_ca *ca, X509_REQ *csr, int64_t not_before, int64_t not_after,
                   X509 **ret_cert)
{
    X509 *x = NULL;
    X509_EXTENSION *san = NULL;
    char *uri = NULL;
    int r;

    if (ca == NULL || csr == NULL || not_after <= not_before)
        return -EINVAL;
    r = dp_ca_csr_uri(csr, &uri);
    if (r < 0)
        return -EINVAL;
    r = -ENOMEM;
    x = X509_new();
    san = uri_san_ext(uri, 1); /* critical: the subject is empty */
    if (x == NULL || san == NULL)
        goto out;
    X509_set_version(x, 2);
    if ((r = set_random_serial(x)) < 0 || (r = set_validity(x, not_before, not_after)) < 0)
        goto out;
    r = -EINVAL;
    if (!X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) ||
        !X509_set_pubkey(x, X509_REQ_get0_pubkey(csr)))
        goto out;
    if ((r = add_ext(ca->cert, x, NID_basic_constraints, "critical,CA:FALSE")) < 0 ||
        (r = add_ext(ca->cert, x, NID_key_usage, "critical,digitalSignature,keyEncipherment")) <
                0 ||
        (r = add_ext(ca->cert, x, NID_ext_key_usage, "serverAuth,clientAuth")) < 0 ||
        (r = add_ext(ca->cert, x, NID_authority_key_identifier, "keyid:always")) < 0)
        goto out;
    r = -ENOMEM;
    if (!X509_add_ext(x, san, -1))
        goto out;
    r = -EIO;
    if (X509_sign(x, ca->key, EVP_sha256()) <= 0)
        goto out;
    *ret_cert = x;
    x = NULL;
    r = 0;
out:
    ERR_clear_error();
    X509_free(x);
    X509_EXTENSION_free(san);
    free(uri);
    return r;
}

int dp_ca_issue(const struct dp_ca *ca, const char *uri, int64_t ttl_s, EVP_PKEY **ret_key,
                X509 **ret_cert)
{
    EVP_PKEY *key = NULL;
    X509_REQ *csr = NULL;
    X509 *cert = NULL;
    int64_t now = (int64_t)time(NULL);
    int r;

    if (ttl_s <= 0)
        return -EINVAL;
    r = dp_ca_key_new(&key);
    if (r < 0)
        goto out;
    r = dp_ca_csr_new(key, uri, &csr);
    if (r < 0)
        goto out;
    r = dp_ca_sign_csr(ca, csr, now - 60, now + ttl_s, &cert);
    if (r < 0)
        goto out;
    *ret_key = key;
    *ret_cert = cert;
    key = NULL;
    r = 0;
out:
    X509_REQ_free(csr);
    EVP_PKEY_free(key);
    return r;
}

static int bio_to_string(BIO *b, char **ret_pem)
{
    char *data;
    long n = BIO_get_mem_data(b, &data);
    char *s;

    if (n < 0)
        return -EIO;
    s = malloc((size_t)n + 1);
    if (s == NULL)
        return -ENOMEM;
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    *ret_pem = s;
    return 0;
}

int dp_ca_sign_csr_pem(const struct dp_ca *ca, const char *csr_pem, size_t csr_len, int64_t ttl_s,
                       char **ret_chain_pem, char **ret_uri)
{
    BIO *in = NULL, *out = NULL;
    X509_REQ *csr = NULL;
    X509 *cert = NULL;
    char *uri = NULL;
    int64_t now = (int64_t)time(NULL);
    int r;

    if (ca == NULL || csr_pem == NULL || ttl_s <= 0)
        return -EINVAL;
    if (csr_len > CSR_PEM_MAX)
        return -EMSGSIZE;
    r = -ENOMEM;
    in = BIO_new_mem_buf(csr_pem, (int)csr_len);
    out = BIO_new(BIO_s_mem());
    if (in == NULL || out == NULL)
        goto out;
    r = -EINVAL;
    csr = PEM_read_bio_X509_REQ(in, NULL, NULL, NULL);
    if (csr == NULL)
        goto out;
    if ((r = dp_ca_csr_uri(csr, &uri)) < 0)
        goto out;
    if ((r = dp_ca_sign_csr(ca, csr, now - 60, now + ttl_s, &cert)) < 0)
        goto out;
    r = -ENOMEM;
    if (!PEM_write_bio_X509(out, cert) || !PEM_write_bio_X509(out, ca->cert))
        goto out;
    for (int i = 0; ca->chain != NULL && i < sk_X509_num(ca->chain); i++)
        if (!PEM_write_bio_X509(out, sk_X509_value(ca->chain, i)))
            goto out;
    if ((r = bio_to_string(out, ret_chain_pem)) < 0)
        goto out;
    if (ret_uri != NULL) {
        *ret_uri = uri;
        uri = NULL;
    }
    r = 0;
out:
    ERR_clear_error();
    BIO_free(in);
    BIO_free(out);
    X509_REQ_free(csr);
    X509_free(cert);
    free(uri);
    return r;
}

#define TO_PEM(writer, obj)                                                                        \
    do {                                                                                           \
        BIO *b_ = BIO_new(BIO_s_mem());                                                            \
        int r_ = -ENOMEM;                                                                          \
        if (b_ != NULL && (writer))                                                                \
            r_ = bio_to_string(b_, ret_pem);                                                       \
        BIO_free(b_);                                                                              \
        ERR_clear_error();                                                                         \
        return r_;                                                                                 \
    } while (0)

int dp_pem_key_to_pem(EVP_PKEY *key, char **ret_pem)
{
    TO_PEM(PEM_write_bio_PrivateKey(b_, key, NULL, NULL, 0, NULL, NULL), key);
}

int dp_pem_cert_to_pem(X509 *cert, char **ret_pem)
{
    TO_PEM(PEM_write_bio_X509(b_, cert), cert);
}

int dp_pem_csr_to_pem(X509_REQ *csr, char **ret_pem)
{
    TO_PEM(PEM_write_bio_X509_REQ(b_, csr), csr);
}

int dp_pem_write_file(const char *path, const char *pem, unsigned mode)
{
    size_t len = strlen(pem), off = 0;
    int fd, r = 0;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return -errno;
    while (off < len) {
        ssize_t n = write(fd, pem + off, len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        off += (size_t)n;
    }
    if (close(fd) < 0 && r == 0)
        r = -errno;
    return r;
}
