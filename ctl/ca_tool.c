/*
 * ca_tool.c — `ambitctl x ca root|intermediate`: a plug-in CA for the `cacerts` Secret, laid out
 * as Istio's tools/certs make targets lay it out (facts from the reference, §7):
 *
 *   root:          <dir>/root-key.pem (RSA 4096), <dir>/root-cert.pem (self-signed, SHA-256,
 *                  CA:true critical, keyUsage critical digitalSignature, nonRepudiation,
 *                  keyEncipherment, keyCertSign; subject O=Istio, CN=Root CA; 3650 days)
 *   intermediate:  <out>/ca-key.pem (RSA 4096), <out>/ca-cert.pem (signed by the root, CA:true,
 *                  pathlen:0, same keyUsage, SAN DNS:istiod.istio-system.svc; subject O=Istio,
 *                  CN=Intermediate CA, L=<cluster>), <out>/cert-chain.pem (= ca-cert + root),
 *                  <out>/root-cert.pem (copy) — ready for
 *                  `kubectl create secret generic cacerts -n istio-system --from-file=<out>/...`
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ctl.h"

static int ossl_fail(char *errbuf, size_t errsz, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    snprintf(errbuf, errsz, "%s%s%s", what, e ? ": " : "", buf);
    return -EIO;
}

static EVP_PKEY *gen_rsa(int bits)
{
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, NULL);
    if (!ctx || EVP_PKEY_keygen_init(ctx) <= 0 || EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, bits) <= 0 ||
        EVP_PKEY_keygen(ctx, &pkey) <= 0)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    return pkey;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static X509 *make_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, int days,
                       const char *cn, const char *locality, const char *basic, const char *san)
{
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    X509_NAME *name = X509_NAME_new();
    if (!x || !bn || !name)
        goto fail;
    /* 159-bit random serial, positive */
    if (!BN_rand(bn, 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) ||
        !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        goto fail;
    X509_set_version(x, 2);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"Istio", -1, -1,
                               0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    if (locality)
        X509_NAME_add_entry_by_txt(name, "L", MBSTRING_ASC, (const unsigned char *)locality, -1,
                                   -1, 0);
    X509_set_subject_name(x, name);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name);
    X509_set_pubkey(x, key);
    X509 *iss = issuer ? issuer : x;
    if (add_ext(x, iss, NID_basic_constraints, basic) < 0 ||
        add_ext(x, iss, NID_key_usage,
                "critical,digitalSignature,nonRepudiation,keyEncipherment,keyCertSign") < 0 ||
        add_ext(x, iss, NID_subject_key_identifier, "hash") < 0 ||
        (issuer && add_ext(x, iss, NID_authority_key_identifier, "keyid:always") < 0) ||
        (san && add_ext(x, iss, NID_subject_alt_name, san) < 0))
        goto fail;
    if (!X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()))
        goto fail;
    BN_free(bn);
    X509_NAME_free(name);
    return x;
fail:
    BN_free(bn);
    X509_NAME_free(name);
    X509_free(x);
    return NULL;
}

static int write_pem(const char *dir, const char *file, EVP_PKEY *key, X509 *c1, X509 *c2,
                     char *errbuf, size_t errsz)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, key ? 0600 : 0644);
    if (fd < 0) {
        int r = -errno;
        snprintf(errbuf, errsz, "%s: %s", path, strerror(errno));
        return r;
    }
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        return -errno;
    }
    int ok = 1;
    if (key)
        ok = PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    if (ok && c1)
        ok = PEM_write_X509(f, c1);
    if (ok && c2)
        ok = PEM_write_X509(f, c2);
    if (fclose(f) != 0 || !ok) {
        snprintf(errbuf, errsz, "%s: write failed", path);
        return -EIO;
    }
    return 0;
}

static int ensure_dir(const char *dir, char *errbuf, size_t errsz)
{
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        int r = -errno;
        snprintf(errbuf, errsz, "%s: %s", dir, strerror(errno));
        return r;
    }
    return 0;
}

int ctl_ca_root(const char *dir, int days, int bits, char *errbuf, size_t errsz)
{
    int r = ensure_dir(dir, errbuf, errsz);
    if (r < 0)
        return r;
    EVP_PKEY *key = gen_rsa(bits);
    if (!key)
        return ossl_fail(errbuf, errsz, "generating the root key");
    X509 *cert = make_cert(key, NULL, NULL, days, "Root CA", NULL, "critical,CA:true", NULL);
    if (!cert) {
        EVP_PKEY_free(key);
        return ossl_fail(errbuf, errsz, "creating the root certificate");
    }
    r = write_pem(dir, "root-key.pem", key, NULL, NULL, errbuf, errsz);
    if (r == 0)
        r = write_pem(dir, "root-cert.pem", NULL, cert, NULL, errbuf, errsz);
    X509_free(cert);
    EVP_PKEY_free(key);
    return r;
}

static int read_root(const char *root_dir, X509 **ret_cert, EVP_PKEY **ret_key, char *errbuf,
                     size_t errsz)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/root-cert.pem", root_dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errbuf, errsz, "%s: %s (run `ambitctl x ca root` first)", path, strerror(errno));
        return -ENOENT;
    }
    X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    snprintf(path, sizeof(path), "%s/root-key.pem", root_dir);
    f = fopen(path, "r");
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!c || !k || X509_check_private_key(c, k) != 1) {
        X509_free(c);
        EVP_PKEY_free(k);
        snprintf(errbuf, errsz, "%s: root key and certificate missing, unreadable or mismatched",
                 root_dir);
        return -EINVAL;
    }
    *ret_cert = c;
    *ret_key = k;
    return 0;
}

int ctl_ca_intermediate(const char *root_dir, const char *out_dir, const char *cluster, int days,
                        int bits, char *errbuf, size_t errsz)
{
    X509 *root = NULL, *cert = NULL;
    EVP_PKEY *root_key = NULL, *key = NULL;
    int r = read_root(root_dir, &root, &root_key, errbuf, errsz);
    if (r < 0)
        return r;
    r = ensure_dir(out_dir, errbuf, errsz);
    if (r < 0)
        goto out;
    key = gen_rsa(bits);
    if (!key) {
        r = ossl_fail(errbuf, errsz, "generating the intermediate key");
        goto out;
    }
    cert = make_cert(key, root, root_key, days, "Intermediate CA", cluster,
                     "critical,CA:true,pathlen:0", "DNS:istiod.istio-system.svc");
    if (!cert) {
        r = ossl_fail(errbuf, errsz, "creating the intermediate certificate");
        goto out;
    }
    r = write_pem(out_dir, "ca-key.pem", key, NULL, NULL, errbuf, errsz);
    if (r == 0)
        r = write_pem(out_dir, "ca-cert.pem", NULL, cert, NULL, errbuf, errsz);
    if (r == 0)
        r = write_pem(out_dir, "cert-chain.pem", NULL, cert, root, errbuf, errsz);
    if (r == 0)
        r = write_pem(out_dir, "root-cert.pem", NULL, root, NULL, errbuf, errsz);
out:
    X509_free(cert);
    X509_free(root);
    EVP_PKEY_free(key);
    EVP_PKEY_free(root_key);
    return r;
}
