/*
 * tls.c — SPIFFE identities, identity store, and the non-blocking TLS transport (tls.h).
 *
 * Reads go through a socket BIO with read-ahead and a 64 KiB read buffer, so one read(2)
 * brings in several records. Writes go into our own BIO that appends the records to a
 * growable buffer (allocated only while ciphertext is pending) and we send(2) that in large
 * chunks: one syscall per up to 256 KiB instead of one per 16 KiB record. No kTLS on this
 * kernel, so userspace encryption is the floor; the rest is about syscalls and copies. Idle
 * connections release their record buffers (SSL_MODE_RELEASE_BUFFERS) and the write buffer,
 * which is what keeps an idle pooled connection small.
 *
 * Verification replaces OpenSSL's default with our own callback (set_cert_verify_callback):
 * X509_verify_cert against the identity's roots, then the SPIFFE SAN rule for the role.
 * The reason is kept in the struct dp_tls so callers can log it verbatim.
 */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "buf.h"
#include "loop.h"

#define TLS13_SUITES "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"
#define PEM_FILE_MAX (1024u * 1024)
#define ERR_MAX      256
#define WBUF_HIGH    (256u * 1024) /* SSL_write blocks (WANT_WRITE) above this much pending */
#define WBUF_LIMIT   (WBUF_HIGH + 64 * 1024)
#define RBUF_LEN     (64u * 1024)

/* ------------------------------------------------------------------ SPIFFE */

static void copy_str(char *dst, size_t dstsz, const char *src)
{
    size_t n = strnlen(src, dstsz - 1);
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static bool comp_char_ok(char c, bool td)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_' || (td && c == ':');
}

/* Copy one component from *p (up to '/' or end) into out; advance *p. */
static int take_comp(const char **p, const char *end, char *out, size_t outsz, bool td,
                     const char **ret_err, const char *what)
{
    const char *s = *p;
    size_t n = 0;

    while (s + n < end && s[n] != '/') {
        if (!comp_char_ok(s[n], td)) {
            *ret_err = what;
            return -EINVAL;
        }
        n++;
    }
    if (n == 0 || n >= outsz) {
        *ret_err = what;
        return -EINVAL;
    }
    memcpy(out, s, n);
    out[n] = '\0';
    *p = s + n;
    return 0;
}

static bool take_lit(const char **p, const char *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
        return false;
    *p += n;
    return true;
}

int dp_spiffe_parse(const char *uri, size_t len, struct dp_spiffe_id *ret_id, const char **ret_err)
{
    struct dp_spiffe_id id;
    const char *p, *end, *err = NULL;
    int r = -EINVAL;

    if (uri == NULL) {
        err = "no SPIFFE ID";
        goto fail;
    }
    p = uri;
    end = uri + len;
    if (len >= DP_SPIFFE_MAX) {
        err = "SPIFFE ID too long";
        goto fail;
    }
    if (!take_lit(&p, end, "spiffe://")) {
        err = "not a spiffe:// URI";
        goto fail;
    }
    if (take_comp(&p, end, id.td, sizeof(id.td), true, &err, "bad trust domain") < 0)
        goto fail;
    if (!take_lit(&p, end, "/ns/")) {
        err = "expected /ns/ after the trust domain";
        goto fail;
    }
    if (take_comp(&p, end, id.ns, sizeof(id.ns), false, &err, "bad namespace") < 0)
        goto fail;
    if (!take_lit(&p, end, "/sa/")) {
        err = "expected /sa/ after the namespace";
        goto fail;
    }
    if (take_comp(&p, end, id.sa, sizeof(id.sa), false, &err, "bad service account") < 0)
        goto fail;
    if (p != end) {
        err = "trailing data after the service account";
        goto fail;
    }
    *ret_id = id;
    return 0;
fail:
    if (ret_err != NULL)
        *ret_err = err;
    return r;
}

int dp_spiffe_format(const struct dp_spiffe_id *id, char *out, size_t outsz)
{
    int n = snprintf(out, outsz, "spiffe://%s/ns/%s/sa/%s", id->td, id->ns, id->sa);
    if (n < 0 || (size_t)n >= outsz)
        return -ENOSPC;
    return n;
}

bool dp_spiffe_in_trust_domain(const char *uri, size_t len, const char *td)
{
    size_t tdl = strlen(td);
    if (len < 9 + tdl + 1 || memcmp(uri, "spiffe://", 9) != 0)
        return false;
    return memcmp(uri + 9, td, tdl) == 0 && uri[9 + tdl] == '/';
}

/* ------------------------------------------------------------------ identities */

struct dp_identity {
    atomic_int refs;
    EVP_PKEY *key;
    STACK_OF(X509) * chain;
    STACK_OF(X509) * roots;
    SSL_CTX *client_ctx;
    SSL_CTX *server_ctx;
    int64_t not_before;
    int64_t not_after;
    char *chain_pem;
    char *roots_pem;
    char name[DP_SPIFFE_MAX];
    char td[256];
    char serial[80];
};

struct dp_tls {
    SSL *ssl;
    int fd;
    struct dp_buf *wbuf; /* ciphertext not yet sent; NULL when empty */
    struct dp_identity *id;
    enum dp_tls_role role;
    unsigned want;
    bool handshake_done;
    unsigned n_sans;
    char *sans[DP_TLS_MAX_SANS];
    char err[ERR_MAX];
    char peer_id[DP_SPIFFE_MAX];
};

static int ssl_ex_idx = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void ex_init(void)
{
    ssl_ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static int get_ex_idx(void)
{
    pthread_once(&ex_once, ex_init);
    return ssl_ex_idx;
}

static int64_t asn1_to_unix(const ASN1_TIME *t)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* First URI SAN of x that is a well-formed SPIFFE ID (or any URI when want_any). */
static int leaf_uris(X509 *x, char out[][DP_SPIFFE_MAX], unsigned max, unsigned *ret_n)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    unsigned n = 0;

    for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names) && n < max; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type != GEN_URI)
            continue;
        const unsigned char *p = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
        int len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
        if (len <= 0 || len >= DP_SPIFFE_MAX || memchr(p, '\0', (size_t)len) != NULL)
            continue;
        memcpy(out[n], p, (size_t)len);
        out[n][len] = '\0';
        n++;
    }
    GENERAL_NAMES_free(names);
    ERR_clear_error();
    *ret_n = n;
    return 0;
}

static void set_err(struct dp_tls *tls, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct dp_tls *tls, const char *fmt, ...)
{
    va_list ap;
    if (tls->err[0] != '\0')
        return; /* keep the first, most specific reason */
    va_start(ap, fmt);
    vsnprintf(tls->err, sizeof(tls->err), fmt, ap);
    va_end(ap);
}

static const char *x509_err_str(int e)
{
    switch (e) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "peer certificate expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "peer certificate not yet valid";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
        return "unknown CA";
    default:
        return NULL;
    }
}

static int on_verify(X509_STORE_CTX *xctx, void *arg)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(xctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct dp_tls *tls = ssl ? SSL_get_ex_data(ssl, get_ex_idx()) : NULL;
    char uris[8][DP_SPIFFE_MAX];
    unsigned n = 0;
    X509 *leaf;

    (void)arg;
    if (tls == NULL)
        return 0;
    if (X509_verify_cert(xctx) != 1) {
        int e = X509_STORE_CTX_get_error(xctx);
        const char *s = x509_err_str(e);
        if (s != NULL)
            set_err(tls, "%s", s);
        else
            set_err(tls, "peer certificate: %s", X509_verify_cert_error_string(e));
        return 0;
    }
    leaf = X509_STORE_CTX_get0_cert(xctx);
    leaf_uris(leaf, uris, DP_ARRAY_SIZE(uris), &n);
    if (tls->role == DP_TLS_CLIENT) {
        for (unsigned i = 0; i < n; i++)
            for (unsigned j = 0; j < tls->n_sans; j++)
                if (strcmp(uris[i], tls->sans[j]) == 0) {
                    copy_str(tls->peer_id, sizeof(tls->peer_id), uris[i]);
                    return 1;
                }
        if (tls->n_sans > 1)
            set_err(tls, "SAN mismatch: got %s want %s (+%u more)", n ? uris[0] : "none",
                    tls->sans[0], tls->n_sans - 1);
        else
            set_err(tls, "SAN mismatch: got %s want %s", n ? uris[0] : "none", tls->sans[0]);
    } else {
        for (unsigned i = 0; i < n; i++) {
            struct dp_spiffe_id sid;
            if (dp_spiffe_in_trust_domain(uris[i], strlen(uris[i]), tls->id->td) &&
                dp_spiffe_parse(uris[i], strlen(uris[i]), &sid, NULL) == 0) {
                copy_str(tls->peer_id, sizeof(tls->peer_id), uris[i]);
                return 1;
            }
        }
        set_err(tls, "no SPIFFE SAN in trust domain %s (got %s)", tls->id->td,
                n ? uris[0] : "none");
    }
    X509_STORE_CTX_set_error(xctx, X509_V_ERR_APPLICATION_VERIFICATION);
    return 0;
}

static void on_info(const SSL *ssl, int where, int ret)
{
    struct dp_tls *tls;
    const char *desc;

    /* SSL_CB_READ_ALERT shares the SSL_CB_ALERT bit with SSL_CB_WRITE_ALERT: test both */
    if (!(where & SSL_CB_ALERT) || !(where & SSL_CB_READ))
        return;
    tls = SSL_get_ex_data(ssl, get_ex_idx());
    /* close_notify is not a failure */
    if (tls == NULL || (ret & 0xff) == SSL_AD_CLOSE_NOTIFY)
        return;
    switch (ret & 0xff) { /* TLS 1.3 alerts OpenSSL 3.0 prints as "unknown" */
    case 109:
        desc = "missing extension";
        break;
    case 116:
        desc = "certificate required";
        break;
    case 120:
        desc = "no application protocol";
        break;
    default:
        desc = SSL_alert_desc_string_long(ret);
    }
    set_err(tls, "tls alert: %s", desc);
}

static int on_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
    struct dp_tls *tls = SSL_get_ex_data(ssl, get_ex_idx());
    (void)arg;
    for (unsigned i = 0; i < inlen;) {
        unsigned l = in[i];
        if (i + 1 + l > inlen)
            break;
        if (l == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    if (tls != NULL)
        set_err(tls, "no ALPN h2");
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static SSL_CTX *make_ctx(struct dp_identity *id, enum dp_tls_role role)
{
    SSL_CTX *ctx = SSL_CTX_new(role == DP_TLS_CLIENT ? TLS_client_method() : TLS_server_method());
    X509_STORE *store;
    STACK_OF(X509) *rest = NULL;

    if (ctx == NULL)
        return NULL;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES))
        goto fail;
    SSL_CTX_set_options(ctx,
                        SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                  SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, RBUF_LEN);
    if (SSL_CTX_use_certificate(ctx, sk_X509_value(id->chain, 0)) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, id->key) != 1)
        goto fail;
    rest = sk_X509_new_null();
    if (rest == NULL)
        goto fail;
    for (int i = 1; i < sk_X509_num(id->chain); i++) {
        X509 *x = sk_X509_value(id->chain, i);
        /* do not send self-signed roots; the peer has them */
        if (X509_check_issued(x, x) == X509_V_OK)
            continue;
        if (!sk_X509_push(rest, x))
            goto fail;
    }
    if (SSL_CTX_set1_chain(ctx, rest) != 1)
        goto fail;
    sk_X509_free(rest);
    rest = NULL;
    store = SSL_CTX_get_cert_store(ctx);
    for (int i = 0; i < sk_X509_num(id->roots); i++)
        if (X509_STORE_add_cert(store, sk_X509_value(id->roots, i)) != 1)
            goto fail;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, on_verify, NULL);
    SSL_CTX_set_info_callback(ctx, on_info);
    if (role == DP_TLS_CLIENT) {
        static const unsigned char alpn[] = {2, 'h', '2'};
        if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn)) != 0)
            goto fail;
    } else {
        SSL_CTX_set_alpn_select_cb(ctx, on_alpn_select, NULL);
    }
    return ctx;
fail:
    sk_X509_free(rest);
    SSL_CTX_free(ctx);
    return NULL;
}

static char *stack_to_pem(STACK_OF(X509) * sk)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *s = NULL;
    long n;

    if (b == NULL)
        return NULL;
    for (int i = 0; i < sk_X509_num(sk); i++)
        if (!PEM_write_bio_X509(b, sk_X509_value(sk, i)))
            goto out;
    n = BIO_get_mem_data(b, &data);
    if (n >= 0 && (s = malloc((size_t)n + 1)) != NULL) {
        memcpy(s, data, (size_t)n);
        s[n] = '\0';
    }
out:
    BIO_free(b);
    return s;
}

int dp_identity_new(EVP_PKEY *key, STACK_OF(X509) * chain, STACK_OF(X509) * roots,
                    struct dp_identity **ret_id, const char **ret_err)
{
    struct dp_identity *id = NULL;
    char uris[4][DP_SPIFFE_MAX];
    unsigned n = 0;
    const char *err = NULL;
    X509 *leaf;
    int r = -EINVAL;

    if (key == NULL || chain == NULL || sk_X509_num(chain) < 1) {
        err = "no key or empty certificate chain";
        goto fail;
    }
    if (roots == NULL || sk_X509_num(roots) < 1) {
        err = "no trust roots";
        goto fail;
    }
    leaf = sk_X509_value(chain, 0);
    if (X509_check_private_key(leaf, key) != 1) {
        err = "private key does not match the certificate";
        goto fail;
    }
    r = -ENOMEM;
    id = calloc(1, sizeof(*id));
    if (id == NULL)
        goto fail;
    atomic_init(&id->refs, 1);
    leaf_uris(leaf, uris, DP_ARRAY_SIZE(uris), &n);
    r = -EINVAL;
    for (unsigned i = 0; i < n; i++) {
        struct dp_spiffe_id sid;
        if (dp_spiffe_parse(uris[i], strlen(uris[i]), &sid, NULL) == 0) {
            copy_str(id->name, sizeof(id->name), uris[i]);
            snprintf(id->td, sizeof(id->td), "%s", sid.td);
            break;
        }
    }
    if (id->name[0] == '\0') {
        err = "certificate has no SPIFFE URI SAN";
        goto fail;
    }
    r = -ENOMEM;
    if (!EVP_PKEY_up_ref(key))
        goto fail;
    id->key = key;
    id->chain = X509_chain_up_ref(chain);
    id->roots = X509_chain_up_ref(roots);
    if (id->chain == NULL || id->roots == NULL)
        goto fail;
    id->not_before = asn1_to_unix(X509_get0_notBefore(leaf));
    id->not_after = asn1_to_unix(X509_get0_notAfter(leaf));
    {
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL);
        char *hex = bn ? BN_bn2hex(bn) : NULL;
        snprintf(id->serial, sizeof(id->serial), "%s", hex ? hex : "");
        OPENSSL_free(hex);
        BN_free(bn);
    }
    id->chain_pem = stack_to_pem(chain);
    id->roots_pem = stack_to_pem(roots);
    if (id->chain_pem == NULL || id->roots_pem == NULL)
        goto fail;
    r = -EINVAL;
    id->client_ctx = make_ctx(id, DP_TLS_CLIENT);
    id->server_ctx = make_ctx(id, DP_TLS_SERVER);
    if (id->client_ctx == NULL || id->server_ctx == NULL) {
        err = "cannot build TLS context (key type or chain unusable)";
        goto fail;
    }
    ERR_clear_error();
    *ret_id = id;
    return 0;
fail:
    ERR_clear_error();
    dp_identity_unref(id);
    if (ret_err != NULL)
        *ret_err = err ? err : "out of memory";
    return r;
}

static STACK_OF(X509) * pem_to_stack(const char *pem, size_t len)
{
    BIO *b;
    STACK_OF(X509) * sk;
    X509 *x;

    if (len > INT32_MAX)
        return NULL;
    b = BIO_new_mem_buf(pem, (int)len);
    sk = sk_X509_new_null();
    if (b == NULL || sk == NULL)
        goto fail;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        if (!sk_X509_push(sk, x)) {
            X509_free(x);
            goto fail;
        }
    ERR_clear_error();
    BIO_free(b);
    return sk;
fail:
    BIO_free(b);
    sk_X509_pop_free(sk, X509_free);
    return NULL;
}

int dp_identity_from_pem(const char *key_pem, size_t key_len, const char *chain_pem,
                         size_t chain_len, const char *roots_pem, size_t roots_len,
                         struct dp_identity **ret_id, const char **ret_err)
{
    STACK_OF(X509) *chain = NULL, *roots = NULL;
    EVP_PKEY *key = NULL;
    BIO *b = NULL;
    int r = -EINVAL;
    const char *err = "out of memory";

    if (key_len > PEM_FILE_MAX || chain_len > PEM_FILE_MAX || roots_len > PEM_FILE_MAX) {
        err = "PEM input too large";
        r = -EMSGSIZE;
        goto out;
    }
    b = BIO_new_mem_buf(key_pem, (int)key_len);
    if (b == NULL)
        goto out;
    key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    if (key == NULL) {
        err = "unparsable private key";
        goto out;
    }
    chain = pem_to_stack(chain_pem, chain_len);
    roots = pem_to_stack(roots_pem, roots_len);
    if (chain == NULL || roots == NULL)
        goto out;
    r = dp_identity_new(key, chain, roots, ret_id, &err);
out:
    ERR_clear_error();
    BIO_free(b);
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(roots, X509_free);
    if (r < 0 && ret_err != NULL)
        *ret_err = err;
    return r;
}

static int read_file(const char *path, char **ret_data, size_t *ret_len)
{
    struct stat st;
    char *data = NULL;
    size_t off = 0;
    int fd, r;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    r = -EMSGSIZE;
    if (st.st_size > PEM_FILE_MAX)
        goto out;
    r = -ENOMEM;
    data = malloc((size_t)st.st_size + 1);
    if (data == NULL)
        goto out;
    while (off < (size_t)st.st_size) {
        ssize_t n = read(fd, data + off, (size_t)st.st_size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = -errno;
            goto out;
        }
        if (n == 0)
            break;
        off += (size_t)n;
    }
    data[off] = '\0';
    *ret_data = data;
    *ret_len = off;
    data = NULL;
    r = 0;
out:
    free(data);
    close(fd);
    return r;
}

int dp_identity_load_files(const char *key_path, const char *chain_path, const char *roots_path,
                           struct dp_identity **ret_id, const char **ret_err)
{
    char *k = NULL, *c = NULL, *rt = NULL;
    size_t kl = 0, cl = 0, rl = 0;
    int r;

    if ((r = read_file(key_path, &k, &kl)) < 0 || (r = read_file(chain_path, &c, &cl)) < 0 ||
        (r = read_file(roots_path, &rt, &rl)) < 0) {
        if (ret_err != NULL)
            *ret_err = "cannot read identity files";
        goto out;
    }
    r = dp_identity_from_pem(k, kl, c, cl, rt, rl, ret_id, ret_err);
out:
    if (k != NULL)
        explicit_bzero(k, kl);
    free(k);
    free(c);
    free(rt);
    return r;
}

struct dp_identity *dp_identity_ref(struct dp_identity *id)
{
    if (id != NULL)
        atomic_fetch_add(&id->refs, 1);
    return id;
}

void dp_identity_unref(struct dp_identity *id)
{
    if (id == NULL || atomic_fetch_sub(&id->refs, 1) != 1)
        return;
    SSL_CTX_free(id->client_ctx);
    SSL_CTX_free(id->server_ctx);
    EVP_PKEY_free(id->key);
    sk_X509_pop_free(id->chain, X509_free);
    sk_X509_pop_free(id->roots, X509_free);
    free(id->chain_pem);
    free(id->roots_pem);
    free(id);
}

const char *dp_identity_name(const struct dp_identity *id)
{
    return id->name;
}

const char *dp_identity_trust_domain(const struct dp_identity *id)
{
    return id->td;
}

int64_t dp_identity_not_before(const struct dp_identity *id)
{
    return id->not_before;
}

int64_t dp_identity_not_after(const struct dp_identity *id)
{
    return id->not_after;
}

bool dp_identity_expired(const struct dp_identity *id, int64_t now)
{
    return now < id->not_before || now > id->not_after;
}

const char *dp_identity_serial(const struct dp_identity *id)
{
    return id->serial;
}

const char *dp_identity_chain_pem(const struct dp_identity *id)
{
    return id->chain_pem;
}

const char *dp_identity_roots_pem(const struct dp_identity *id)
{
    return id->roots_pem;
}

/* ------------------------------------------------------------------ identity store */

struct dp_idstore {
    pthread_mutex_t lock;
    struct dp_identity **ids;
    size_t n, cap;
};

int dp_idstore_new(struct dp_idstore **ret_store)
{
    struct dp_idstore *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    *ret_store = s;
    return 0;
}

void dp_idstore_free(struct dp_idstore *store)
{
    if (store == NULL)
        return;
    for (size_t i = 0; i < store->n; i++)
        dp_identity_unref(store->ids[i]);
    free(store->ids);
    pthread_mutex_destroy(&store->lock);
    free(store);
}

static ssize_t store_find(struct dp_idstore *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->ids[i]->name, name) == 0)
            return (ssize_t)i;
    return -1;
}

int dp_idstore_put(struct dp_idstore *store, struct dp_identity *id)
{
    struct dp_identity *old = NULL;
    ssize_t i;
    int r = 0;

    pthread_mutex_lock(&store->lock);
    i = store_find(store, id->name);
    if (i >= 0) {
        old = store->ids[i];
        store->ids[i] = dp_identity_ref(id);
    } else {
        if (store->n == store->cap) {
            size_t cap = store->cap ? store->cap * 2 : 8;
            struct dp_identity **n = realloc(store->ids, cap * sizeof(*n));
            if (n == NULL) {
                r = -ENOMEM;
                goto out;
            }
            store->ids = n;
            store->cap = cap;
        }
        store->ids[store->n++] = dp_identity_ref(id);
    }
out:
    pthread_mutex_unlock(&store->lock);
    dp_identity_unref(old);
    return r;
}

int dp_idstore_get(struct dp_idstore *store, const char *spiffe, struct dp_identity **ret_id)
{
    ssize_t i;
    int r = -ENOENT;

    pthread_mutex_lock(&store->lock);
    i = store_find(store, spiffe);
    if (i >= 0) {
        *ret_id = dp_identity_ref(store->ids[i]);
        r = 0;
    }
    pthread_mutex_unlock(&store->lock);
    return r;
}

int dp_idstore_remove(struct dp_idstore *store, const char *spiffe)
{
    struct dp_identity *old = NULL;
    ssize_t i;

    pthread_mutex_lock(&store->lock);
    i = store_find(store, spiffe);
    if (i >= 0) {
        old = store->ids[i];
        store->ids[i] = store->ids[--store->n];
    }
    pthread_mutex_unlock(&store->lock);
    if (old == NULL)
        return -ENOENT;
    dp_identity_unref(old);
    return 0;
}

void dp_idstore_foreach(struct dp_idstore *store, dp_idstore_cb *cb, void *arg)
{
    pthread_mutex_lock(&store->lock);
    for (size_t i = 0; i < store->n; i++)
        cb(store->ids[i], arg);
    pthread_mutex_unlock(&store->lock);
}

/* ------------------------------------------------------------------ transport */

/* The write BIO: records are appended to tls->wbuf; dp_tls_flush() sends them. */
static BIO_METHOD *wbio_method;
static pthread_once_t wbio_once = PTHREAD_ONCE_INIT;

static int wbio_write_ex(BIO *b, const char *data, size_t len, size_t *written)
{
    struct dp_tls *tls = BIO_get_data(b);

    BIO_clear_retry_flags(b);
    if (tls->wbuf != NULL && tls->wbuf->len >= WBUF_HIGH) {
        BIO_set_retry_write(b);
        return 0;
    }
    if (tls->wbuf == NULL && dp_buf_new(DP_MAX(len, (size_t)32 * 1024), WBUF_LIMIT, &tls->wbuf) < 0)
        return 0;
    if (dp_buf_append(&tls->wbuf, data, len) < 0) {
        BIO_set_retry_write(b); /* over the hard limit: wait for the socket */
        return 0;
    }
    *written = len;
    return 1;
}

static long wbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    struct dp_tls *tls = BIO_get_data(b);
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* the owner flushes after every SSL call */
    case BIO_CTRL_WPENDING:
    case BIO_CTRL_PENDING:
        return tls != NULL && tls->wbuf != NULL ? (long)tls->wbuf->len : 0;
    default:
        return 0;
    }
}

static int wbio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void wbio_init_method(void)
{
    wbio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "dp_tls_wbuf");
    if (wbio_method != NULL) {
        BIO_meth_set_write_ex(wbio_method, wbio_write_ex);
        BIO_meth_set_ctrl(wbio_method, wbio_ctrl);
        BIO_meth_set_create(wbio_method, wbio_create);
    }
}

int dp_tls_flush(struct dp_tls *tls)
{
    while (tls->wbuf != NULL && tls->wbuf->len > 0) {
        ssize_t n = dp_buf_write_fd(tls->wbuf, tls->fd);
        if (n == -EAGAIN) {
            tls->want = DP_EV_WRITE;
            return -EAGAIN;
        }
        if (n < 0) {
            set_err(tls, "transport: %s", strerror((int)-n));
            return (int)n;
        }
    }
    if (tls->wbuf != NULL) {
        dp_buf_free(tls->wbuf);
        tls->wbuf = NULL;
    }
    return 0;
}

bool dp_tls_wpending(const struct dp_tls *tls)
{
    return tls->wbuf != NULL && tls->wbuf->len > 0;
}

int dp_tls_new(struct dp_identity *id, enum dp_tls_role role, int fd,
               const char *const *expected_sans, unsigned n_sans, struct dp_tls **ret_tls)
{
    struct dp_tls *tls;
    int r = -ENOMEM;

    if (id == NULL || fd < 0 || n_sans > DP_TLS_MAX_SANS ||
        (role == DP_TLS_CLIENT && (n_sans == 0 || expected_sans == NULL)))
        return -EINVAL;
    tls = calloc(1, sizeof(*tls));
    if (tls == NULL)
        return -ENOMEM;
    tls->role = role;
    tls->id = dp_identity_ref(id);
    for (unsigned i = 0; role == DP_TLS_CLIENT && i < n_sans; i++) {
        if (expected_sans[i] == NULL) {
            r = -EINVAL;
            goto fail;
        }
        tls->sans[i] = strdup(expected_sans[i]);
        if (tls->sans[i] == NULL)
            goto fail;
        tls->n_sans = i + 1;
    }
    tls->ssl = SSL_new(role == DP_TLS_CLIENT ? id->client_ctx : id->server_ctx);
    if (tls->ssl == NULL)
        goto fail;
    if (!SSL_set_ex_data(tls->ssl, get_ex_idx(), tls))
        goto fail;
    pthread_once(&wbio_once, wbio_init_method);
    if (wbio_method == NULL)
        goto fail;
    {
        BIO *rb = BIO_new_socket(fd, BIO_NOCLOSE);
        BIO *wb = BIO_new(wbio_method);
        if (rb == NULL || wb == NULL) {
            BIO_free(rb);
            BIO_free(wb);
            goto fail;
        }
        BIO_set_data(wb, tls);
        SSL_set_bio(tls->ssl, rb, wb); /* the SSL owns both now */
    }
    tls->fd = fd;
    if (role == DP_TLS_CLIENT)
        SSL_set_connect_state(tls->ssl);
    else
        SSL_set_accept_state(tls->ssl);
    *ret_tls = tls;
    return 0;
fail:
    ERR_clear_error();
    dp_tls_free(tls);
    return r;
}

void dp_tls_free(struct dp_tls *tls)
{
    if (tls == NULL)
        return;
    SSL_free(tls->ssl);
    dp_buf_free(tls->wbuf);
    for (unsigned i = 0; i < tls->n_sans; i++)
        free(tls->sans[i]);
    dp_identity_unref(tls->id);
    free(tls);
}

/* Map an SSL_get_error result; sets want and err. */
static int map_ssl_err(struct dp_tls *tls, int ret, bool handshake)
{
    int e = SSL_get_error(tls->ssl, ret);
    unsigned long le;
    int saved = errno;

    switch (e) {
    case SSL_ERROR_WANT_READ:
        tls->want = DP_EV_READ;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        tls->want = DP_EV_WRITE;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        if (handshake) {
            set_err(tls, "connection closed during handshake");
            return -ECONNRESET;
        }
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (saved == 0 || saved == EAGAIN) {
            if (handshake)
                set_err(tls, "connection closed during handshake");
            return handshake ? -ECONNRESET : 0;
        }
        set_err(tls, "transport: %s", strerror(saved));
        return -saved;
    default:
        le = ERR_peek_last_error();
        if (ERR_GET_LIB(le) == ERR_LIB_SSL &&
            ERR_GET_REASON(le) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE)
            set_err(tls, "peer did not present a certificate");
        else if (le != 0)
            set_err(tls, "tls: %s",
                    ERR_reason_error_string(le) ? ERR_reason_error_string(le) : "protocol error");
        else
            set_err(tls, "tls: protocol error");
        ERR_clear_error();
        return handshake ? -ECONNREFUSED : -EPROTO;
    }
}

int dp_tls_handshake(struct dp_tls *tls)
{
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    int ret;

    if (tls->handshake_done)
        return 0;
    if (dp_tls_wpending(tls)) {
        int fr = dp_tls_flush(tls);
        if (fr == -EAGAIN)
            return -EAGAIN;
        if (fr < 0)
            return -ECONNRESET;
    }
    ERR_clear_error();
    errno = 0;
    ret = SSL_do_handshake(tls->ssl);
    /* send what this step produced (a flight, or the alert that explains a failure) */
    int fr = dp_tls_flush(tls);
    if (ret != 1) {
        int r = map_ssl_err(tls, ret, true);
        if (r == -EAGAIN && fr == -EAGAIN)
            tls->want = DP_EV_WRITE;
        return r;
    }
    SSL_get0_alpn_selected(tls->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        set_err(tls, "no ALPN h2");
        return -ECONNREFUSED;
    }
    if (tls->peer_id[0] == '\0') {
        /* verify callback always sets it on success; refuse defensively */
        set_err(tls, "peer not verified");
        return -ECONNREFUSED;
    }
    tls->handshake_done = true;
    tls->want = 0;
    return 0;
}

ssize_t dp_tls_read(struct dp_tls *tls, void *buf, size_t len)
{
    size_t n = 0;
    int ret;

    ERR_clear_error();
    errno = 0;
    ret = SSL_read_ex(tls->ssl, buf, len, &n);
    if (dp_tls_wpending(tls))
        dp_tls_flush(tls); /* e.g. a KeyUpdate answer; the owner watches dp_tls_wpending() */
    if (ret == 1)
        return (ssize_t)n;
    return map_ssl_err(tls, ret, false);
}

ssize_t dp_tls_write(struct dp_tls *tls, const void *buf, size_t len)
{
    size_t n = 0;
    int ret;

    if (len == 0)
        return 0;
    if (dp_tls_wpending(tls)) {
        int fr = dp_tls_flush(tls);
        if (fr < 0 && fr != -EAGAIN)
            return fr;
    }
    /* With partial writes OpenSSL returns after every record: keep encrypting into our
     * buffer until the input is consumed or the buffer is full, then send it in one go. */
    size_t done = 0;
    for (;;) {
        ERR_clear_error();
        errno = 0;
        n = 0;
        ret = SSL_write_ex(tls->ssl, (const char *)buf + done, len - done, &n);
        if (ret != 1)
            break;
        done += n;
        if (done == len || (tls->wbuf != NULL && tls->wbuf->len >= WBUF_HIGH))
            break;
    }
    if (done > 0) {
        int fr = dp_tls_flush(tls);
        if (fr < 0 && fr != -EAGAIN)
            return fr;
        return (ssize_t)done;
    }
    ret = map_ssl_err(tls, ret, false);
    return ret == 0 ? -EPIPE : ret;
}

int dp_tls_shutdown(struct dp_tls *tls)
{
    int ret;

    ERR_clear_error();
    errno = 0;
    ret = SSL_shutdown(tls->ssl);
    int fr = dp_tls_flush(tls);
    if (ret >= 0)
        return fr == -EAGAIN ? -EAGAIN : (fr < 0 ? fr : 0);
    ret = map_ssl_err(tls, ret, false);
    return ret == 0 ? 0 : ret;
}

unsigned dp_tls_want(const struct dp_tls *tls)
{
    return tls->want;
}

bool dp_tls_pending(const struct dp_tls *tls)
{
    return SSL_has_pending(tls->ssl) == 1; /* decrypted or read-ahead bytes */
}

const char *dp_tls_error(const struct dp_tls *tls)
{
    return tls->err;
}

const char *dp_tls_peer_id(const struct dp_tls *tls)
{
    return tls->handshake_done ? tls->peer_id : "";
}

struct dp_identity *dp_tls_identity(const struct dp_tls *tls)
{
    return tls->id;
}

SSL *dp_tls_ssl(const struct dp_tls *tls)
{
    return tls->ssl;
}
