/*
 * ca_store.c — CA bootstrap from Secrets. See ca_store.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "ca_store.h"

void op_ca_free(struct op_ca *ca)
{
    if (ca == NULL)
        return;
    dp_ca_free(ca->ca);
    free(ca->root_pem);
    free(ca->chain_pem);
    free(ca);
}

/* base64 member of secret.data, decoded (new) or NULL */
static char *secret_field(const json_t *secret, const char *key, size_t *ret_len)
{
    const char *b64 = json_string_value(json_object_get(json_object_get(secret, "data"), key));
    char *out = NULL;
    size_t n = 0;

    if (b64 == NULL || dp_kube_base64_decode(b64, strlen(b64), &out, &n) < 0)
        return NULL;
    if (ret_len)
        *ret_len = n;
    return out;
}

int op_ca_from_secret(const json_t *secret, struct op_ca **ret_ca, char *errbuf, size_t errsz)
{
    bool tls_layout = json_object_get(json_object_get(secret, "data"), "tls.crt") != NULL;
    char *cert = secret_field(secret, tls_layout ? "tls.crt" : "ca-cert.pem", NULL);
    char *key = secret_field(secret, tls_layout ? "tls.key" : "ca-key.pem", NULL);
    char *root = secret_field(secret, tls_layout ? "ca.crt" : "root-cert.pem", NULL);
    char *chain = tls_layout ? NULL : secret_field(secret, "cert-chain.pem", NULL);
    struct op_ca *ca = NULL;
    BIO *bio = NULL;
    X509 *x;
    int r = -EINVAL;

    if (cert == NULL || key == NULL) {
        snprintf(errbuf, errsz, "secret %s: missing %s", dp_kube_meta_str(secret, "name"),
                 cert == NULL ? "certificate" : "key");
        r = -ENOENT;
        goto out;
    }
    ca = calloc(1, sizeof(*ca));
    if (ca == NULL || (ca->ca = calloc(1, sizeof(*ca->ca))) == NULL) {
        r = -ENOMEM;
        goto out;
    }
    bio = BIO_new_mem_buf(key, -1);
    ca->ca->key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    bio = BIO_new_mem_buf(cert, -1);
    ca->ca->cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    bio = NULL;
    if (ca->ca->key == NULL || ca->ca->cert == NULL ||
        X509_check_private_key(ca->ca->cert, ca->ca->key) != 1) {
        snprintf(errbuf, errsz, "secret %s: unreadable or mismatched CA certificate/key",
                 dp_kube_meta_str(secret, "name"));
        goto out;
    }
    /* chain above the CA cert: cert-chain.pem minus the CA cert itself, else the root */
    ca->ca->chain = sk_X509_new_null();
    bio = BIO_new_mem_buf(chain ? chain : (root ? root : ""), -1);
    while (bio != NULL && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_cmp(x, ca->ca->cert) == 0 || sk_X509_push(ca->ca->chain, x) <= 0)
            X509_free(x);
    }
    BIO_free(bio);
    bio = NULL;
    if (root != NULL) {
        ca->root_pem = root;
        root = NULL;
    } else {
        /* self-signed CA: it is its own root */
        if (dp_pem_cert_to_pem(ca->ca->cert, &ca->root_pem) < 0) {
            r = -ENOMEM;
            goto out;
        }
    }
    {
        char *c = NULL, *acc = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&acc, &len);

        if (f == NULL) {
            r = -ENOMEM;
            goto out;
        }
        if (dp_pem_cert_to_pem(ca->ca->cert, &c) == 0)
            fputs(c, f);
        free(c);
        for (int i = 0; i < sk_X509_num(ca->ca->chain); i++) {
            c = NULL;
            if (dp_pem_cert_to_pem(sk_X509_value(ca->ca->chain, i), &c) == 0)
                fputs(c, f);
            free(c);
        }
        fclose(f);
        ca->chain_pem = acc;
    }
    ca->source = tls_layout || chain ? "cacerts" : "istio-ca-secret";
    *ret_ca = ca;
    ca = NULL;
    r = 0;
out:
    op_ca_free(ca);
    if (key)
        explicit_bzero(key, strlen(key));
    free(key);
    free(cert);
    free(root);
    free(chain);
    return r;
}

static char *b64(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(4 * ((n + 2) / 3) + 1);

    if (out != NULL)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

static int create_self_signed(struct dp_kube_client *c, const char *ns, char *errbuf,
                              size_t errsz)
{
    struct dp_ca *root = NULL;
    char *cert = NULL, *key = NULL, *cert64 = NULL, *key64 = NULL;
    json_t *secret = NULL;
    int r;

    r = dp_ca_new_root("cluster.local", 3650, &root);
    if (r < 0) {
        snprintf(errbuf, errsz, "cannot create a self-signed root: %s", strerror(-r));
        return r;
    }
    r = -ENOMEM;
    if (dp_pem_cert_to_pem(root->cert, &cert) < 0 || dp_pem_key_to_pem(root->key, &key) < 0 ||
        (cert64 = b64(cert)) == NULL || (key64 = b64(key)) == NULL)
        goto out;
    secret = json_pack("{s:s,s:s,s:{s:s,s:s},s:s,s:{s:s,s:s}}", "apiVersion", "v1", "kind",
                       "Secret", "metadata", "name", "istio-ca-secret", "namespace", ns, "type",
                       "istio.io/ca-root", "data", "ca-cert.pem", cert64, "ca-key.pem", key64);
    if (secret == NULL)
        goto out;
    r = dp_kube_create(c, &DP_KUBE_RES_SECRETS, ns, secret, NULL);
    if (r == -EEXIST)
        r = 0; /* another replica was faster: use its root */
    if (r < 0)
        snprintf(errbuf, errsz, "create secret %s/istio-ca-secret: %s", ns,
                 dp_kube_client_last_error(c));
out:
    json_decref(secret);
    if (key)
        explicit_bzero(key, strlen(key));
    if (key64)
        explicit_bzero(key64, strlen(key64));
    free(key);
    free(key64);
    free(cert);
    free(cert64);
    dp_ca_free(root);
    return r;
}

int op_ca_bootstrap(struct dp_kube_client *c, const char *ns, struct op_ca **ret_ca,
                    char *errbuf, size_t errsz)
{
    json_t *secret = NULL;
    int r;

    r = dp_kube_get(c, &DP_KUBE_RES_SECRETS, ns, "cacerts", &secret);
    if (r == 0) {
        r = op_ca_from_secret(secret, ret_ca, errbuf, errsz);
        json_decref(secret);
        return r; /* a broken plug-in CA is an error, never silently replaced */
    }
    if (r != -ENOENT) {
        snprintf(errbuf, errsz, "get secret %s/cacerts: %s", ns, dp_kube_client_last_error(c));
        return r;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        r = dp_kube_get(c, &DP_KUBE_RES_SECRETS, ns, "istio-ca-secret", &secret);
        if (r == 0) {
            r = op_ca_from_secret(secret, ret_ca, errbuf, errsz);
            json_decref(secret);
            if (r == 0 && attempt == 1)
                (*ret_ca)->source = "self-signed";
            return r;
        }
        if (r != -ENOENT) {
            snprintf(errbuf, errsz, "get secret %s/istio-ca-secret: %s", ns,
                     dp_kube_client_last_error(c));
            return r;
        }
        r = create_self_signed(c, ns, errbuf, errsz);
        if (r < 0)
            return r;
    }
    snprintf(errbuf, errsz, "secret %s/istio-ca-secret vanished after creation", ns);
    return -EAGAIN;
}

int op_ca_sign(const struct op_ca *ca, const char *csr_pem, size_t csr_len, int64_t ttl_s,
               json_t **ret_chain, char **ret_uri)
{
    char *chain_pem = NULL, *uri = NULL, *p;
    json_t *arr;
    int r;

    r = dp_ca_sign_csr_pem(ca->ca, csr_pem, csr_len, ttl_s, &chain_pem, &uri);
    if (r < 0)
        return r;
    arr = json_array();
    if (arr == NULL) {
        r = -ENOMEM;
        goto out;
    }
    /* split the concatenated PEM into one string per certificate */
    p = chain_pem;
    while ((p = strstr(p, "-----BEGIN CERTIFICATE-----")) != NULL) {
        char *end = strstr(p, "-----END CERTIFICATE-----");
        size_t n;

        if (end == NULL)
            break;
        end += strlen("-----END CERTIFICATE-----");
        n = (size_t)(end - p);
        json_array_append_new(arr, json_sprintf("%.*s\n", (int)n, p));
        p = end;
    }
    *ret_chain = arr;
    if (ret_uri) {
        *ret_uri = uri;
        uri = NULL;
    }
    r = 0;
out:
    free(chain_pem);
    free(uri);
    return r;
}
