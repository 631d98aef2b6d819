/*
 * test_tls.c — SPIFFE parsing, the test CA, identities + store, and mTLS handshakes over
 * socketpairs: good mTLS, expired peer, foreign CA, wrong SAN, missing client certificate,
 * other trust domain, intermediate CA chains.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cmocka.h>

#include "loop.h"
#include "tls_fixture.h"

#define ID_A  "spiffe://cluster.local/ns/default/sa/a"
#define ID_B  "spiffe://cluster.local/ns/default/sa/b"
#define ID_OT "spiffe://other.domain/ns/default/sa/b"

static struct dp_ca *ca, *ca2, *ca_other_td;

static int group_setup(void **state)
{
    (void)state;
    if (dp_ca_new_root("ambit test", 30, &ca) < 0 || dp_ca_new_root("foreign", 30, &ca2) < 0)
        return -1;
    ca_other_td = ca; /* same CA, different trust domain in the SAN */
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    dp_ca_free(ca);
    dp_ca_free(ca2);
    return 0;
}

static void test_spiffe_parse(void **state)
{
    struct dp_spiffe_id id;
    const char *err = NULL;
    char out[DP_SPIFFE_MAX];
    (void)state;

    assert_int_equal(dp_spiffe_parse(ID_A, strlen(ID_A), &id, &err), 0);
    assert_string_equal(id.td, "cluster.local");
    assert_string_equal(id.ns, "default");
    assert_string_equal(id.sa, "a");
    assert_int_equal(dp_spiffe_format(&id, out, sizeof(out)), (int)strlen(ID_A));
    assert_string_equal(out, ID_A);
    assert_int_equal(dp_spiffe_format(&id, out, 10), -ENOSPC);

    static const char *bad[] = {
            "",
            "http://cluster.local/ns/a/sa/b",
            "spiffe://",
            "spiffe:///ns/a/sa/b",
            "spiffe://td/ns//sa/b",
            "spiffe://td/ns/a/sa/",
            "spiffe://td/ns/a/sa/b/",
            "spiffe://td/ns/a/sa/b/extra",
            "spiffe://td/sa/b/ns/a",
            "spiffe://td/ns/a%2f/sa/b",
            "spiffe://td/ns/a b/sa/b",
    };
    for (size_t i = 0; i < DP_ARRAY_SIZE(bad); i++) {
        err = NULL;
        assert_int_equal(dp_spiffe_parse(bad[i], strlen(bad[i]), &id, &err), -EINVAL);
        assert_non_null(err);
    }
    /* embedded NUL and length are respected */
    assert_int_equal(dp_spiffe_parse("spiffe://td/ns/a/sa/b\0x", 23, &id, &err), -EINVAL);
    assert_int_equal(dp_spiffe_parse("spiffe://td/ns/a/sa/bXYZ", 21, &id, &err), 0);
    assert_string_equal(id.sa, "b");

    assert_true(dp_spiffe_in_trust_domain(ID_A, strlen(ID_A), "cluster.local"));
    assert_false(dp_spiffe_in_trust_domain(ID_A, strlen(ID_A), "cluster.loca"));
    assert_false(dp_spiffe_in_trust_domain(ID_A, strlen(ID_A), "cluster.local.x"));
}

static void test_ca_csr(void **state)
{
    EVP_PKEY *key = NULL;
    X509_REQ *csr = NULL;
    char *pem = NULL, *chain = NULL, *uri = NULL;
    (void)state;

    assert_int_equal(dp_ca_key_new(&key), 0);
    assert_int_equal(dp_ca_csr_new(key, ID_A, &csr), 0);
    assert_int_equal(dp_ca_csr_uri(csr, &uri), 0);
    assert_string_equal(uri, ID_A);
    free(uri);
    uri = NULL;
    assert_int_equal(dp_pem_csr_to_pem(csr, &pem), 0);
    assert_int_equal(dp_ca_sign_csr_pem(ca, pem, strlen(pem), 3600, &chain, &uri), 0);
    assert_string_equal(uri, ID_A);
    /* leaf first, then the CA */
    const char *second = strstr(chain + 1, "-----BEGIN CERTIFICATE-----");
    assert_non_null(second);
    assert_int_equal(dp_ca_sign_csr_pem(ca, "garbage", 7, 3600, &chain, &uri), -EINVAL);
    assert_int_equal(dp_ca_csr_new(key, "", &csr), -EINVAL);

    /* the issued chain + key form a usable identity */
    char *kpem = NULL, *rpem = NULL;
    struct dp_identity *id = NULL;
    const char *err = NULL;
    assert_int_equal(dp_pem_key_to_pem(key, &kpem), 0);
    assert_int_equal(dp_pem_cert_to_pem(ca->cert, &rpem), 0);
    assert_int_equal(dp_identity_from_pem(kpem, strlen(kpem), chain, strlen(chain), rpem,
                                          strlen(rpem), &id, &err),
                     0);
    assert_string_equal(dp_identity_name(id), ID_A);
    assert_string_equal(dp_identity_trust_domain(id), "cluster.local");
    assert_false(dp_identity_expired(id, time(NULL)));
    assert_true(dp_identity_expired(id, time(NULL) + 7200));
    assert_true(dp_identity_not_after(id) - dp_identity_not_before(id) == 3660);
    assert_true(strlen(dp_identity_serial(id)) > 0);
    assert_null(strstr(dp_identity_chain_pem(id), "PRIVATE"));
    dp_identity_unref(id);

    /* a key that does not match the chain is refused */
    EVP_PKEY *k2 = NULL;
    char *k2pem = NULL;
    assert_int_equal(dp_ca_key_new(&k2), 0);
    assert_int_equal(dp_pem_key_to_pem(k2, &k2pem), 0);
    assert_int_equal(dp_identity_from_pem(k2pem, strlen(k2pem), chain, strlen(chain), rpem,
                                          strlen(rpem), &id, &err),
                     -EINVAL);
    assert_string_equal(err, "private key does not match the certificate");

    EVP_PKEY_free(k2);
    free(k2pem);
    free(kpem);
    free(rpem);
    free(pem);
    free(chain);
    free(uri);
    X509_REQ_free(csr);
    EVP_PKEY_free(key);
}

/* CSR with an arbitrary SAN config string (test-only: OpenSSL's parser). */
static X509_REQ *csr_with(EVP_PKEY *key, const char *san_conf)
{
    X509_REQ *req = X509_REQ_new();
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san_conf);
    X509_REQ_set_pubkey(req, key);
    sk_X509_EXTENSION_push(exts, ext);
    X509_REQ_add_extensions(req, exts);
    X509_REQ_sign(req, key, EVP_sha256());
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return req;
}

static void test_ca_refuses_bad_csrs(void **state)
{
    EVP_PKEY *key = NULL, *other = NULL;
    X509_REQ *csr;
    X509 *cert = NULL;
    char *uri = NULL;
    int64_t now = time(NULL);
    (void)state;

    assert_int_equal(dp_ca_key_new(&key), 0);
    assert_int_equal(dp_ca_key_new(&other), 0);
    static const char *bad[] = {"URI:" ID_A ",URI:" ID_B, "DNS:evil.example",
                                "URI:" ID_A ",DNS:evil.example", "email:a@b.c"};
    for (size_t i = 0; i < DP_ARRAY_SIZE(bad); i++) {
        csr = csr_with(key, bad[i]);
        assert_int_equal(dp_ca_csr_uri(csr, &uri), -EINVAL);
        assert_int_equal(dp_ca_sign_csr(ca, csr, now, now + 60, &cert), -EINVAL);
        X509_REQ_free(csr);
    }
    /* signed by a different key than the one it carries */
    csr = csr_with(key, "URI:" ID_A);
    X509_REQ_sign(csr, other, EVP_sha256());
    assert_int_equal(dp_ca_csr_uri(csr, &uri), -EBADMSG);
    X509_REQ_free(csr);
    /* no config-string injection: a ',' stays inside the one URI */
    const char *tricky = "spiffe://cluster.local/ns/a/sa/b,DNS:evil.example";
    assert_int_equal(dp_ca_csr_new(key, tricky, &csr), 0);
    assert_int_equal(dp_ca_sign_csr(ca, csr, now, now + 60, &cert), 0);
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    assert_int_equal(sk_GENERAL_NAME_num(names), 1);
    const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, 0);
    assert_int_equal(gn->type, GEN_URI);
    assert_int_equal(ASN1_STRING_length(gn->d.uniformResourceIdentifier), (int)strlen(tricky));
    GENERAL_NAMES_free(names);
    X509_free(cert);
    X509_REQ_free(csr);
    /* control characters and spaces are refused */
    assert_int_equal(dp_ca_csr_new(key, "spiffe://td/ns/a/sa/b c", &csr), -EINVAL);
    assert_int_equal(dp_ca_csr_new(key, "spiffe://td/ns/a/sa/b\n", &csr), -EINVAL);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

static void test_idstore(void **state)
{
    struct dp_idstore *st = NULL;
    struct dp_identity *a1 = fx_identity(ca, ID_A, -60, 3600);
    struct dp_identity *a2 = fx_identity(ca, ID_A, -60, 7200);
    struct dp_identity *got = NULL, *held = NULL;
    (void)state;

    assert_non_null(a1);
    assert_non_null(a2);
    assert_int_equal(dp_idstore_new(&st), 0);
    assert_int_equal(dp_idstore_get(st, ID_A, &got), -ENOENT);
    assert_int_equal(dp_idstore_put(st, a1), 0);
    assert_int_equal(dp_idstore_get(st, ID_A, &held), 0);
    assert_ptr_equal(held, a1);
    /* renewal: new lookups see a2, the held reference to a1 stays valid */
    assert_int_equal(dp_idstore_put(st, a2), 0);
    assert_int_equal(dp_idstore_get(st, ID_A, &got), 0);
    assert_ptr_equal(got, a2);
    dp_identity_unref(a1);
    assert_string_equal(dp_identity_name(held), ID_A); /* still alive via `held` */
    dp_identity_unref(held);
    dp_identity_unref(got);
    assert_int_equal(dp_idstore_remove(st, ID_A), 0);
    assert_int_equal(dp_idstore_remove(st, ID_A), -ENOENT);
    dp_idstore_free(st);
    dp_idstore_free(NULL);
    dp_identity_unref(a2);
}

struct pair {
    int fds[2];
    struct dp_tls *c, *s;
    int rc, rs;
};

static void pair_run(struct pair *p, struct dp_identity *cid, struct dp_identity *sid,
                     const char *want_san)
{
    const char *sans[] = {want_san};
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fds), 0);
    fx_nonblock(p->fds[0]);
    fx_nonblock(p->fds[1]);
    assert_int_equal(dp_tls_new(cid, DP_TLS_CLIENT, p->fds[0], sans, 1, &p->c), 0);
    assert_int_equal(dp_tls_new(sid, DP_TLS_SERVER, p->fds[1], NULL, 0, &p->s), 0);
    fx_handshake_pair(p->c, p->s, &p->rc, &p->rs);
}

/* After the client believes it is done (TLS 1.3: the server checks our cert later), a read
 * shows whether the server accepted us. */
static ssize_t client_read_result(struct pair *p)
{
    char b[16];
    ssize_t n = -EAGAIN;
    for (int i = 0; i < 100 && n == -EAGAIN; i++)
        n = dp_tls_read(p->c, b, sizeof(b));
    return n;
}

static void pair_done(struct pair *p)
{
    dp_tls_free(p->c);
    dp_tls_free(p->s);
    close(p->fds[0]);
    close(p->fds[1]);
}

static void test_mtls_good(void **state)
{
    struct dp_identity *a = fx_identity(ca, ID_A, -60, 3600);
    struct dp_identity *b = fx_identity(ca, ID_B, -60, 3600);
    struct pair p;
    char buf[64];
    (void)state;

    pair_run(&p, a, b, ID_B);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.rs, 0);
    assert_string_equal(dp_tls_peer_id(p.c), ID_B);
    assert_string_equal(dp_tls_peer_id(p.s), ID_A);
    assert_string_equal(SSL_get_version(dp_tls_ssl(p.c)), "TLSv1.3");
    const char *suite = SSL_get_cipher_name(dp_tls_ssl(p.c));
    assert_true(strcmp(suite, "TLS_AES_256_GCM_SHA384") == 0 ||
                strcmp(suite, "TLS_AES_128_GCM_SHA256") == 0);
    assert_false(SSL_session_reused(dp_tls_ssl(p.c)));
    assert_null(SSL_get_servername(dp_tls_ssl(p.s), TLSEXT_NAMETYPE_host_name));

    assert_int_equal(dp_tls_write(p.c, "hello", 5), 5);
    assert_int_equal(dp_tls_read(p.s, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(dp_tls_read(p.s, buf, sizeof(buf)), -EAGAIN);
    assert_int_equal(dp_tls_want(p.s), DP_EV_READ);
    assert_int_equal(dp_tls_write(p.s, "world!", 6), 6);
    assert_int_equal(dp_tls_read(p.c, buf, sizeof(buf)), 6);
    /* orderly close */
    assert_int_equal(dp_tls_shutdown(p.c), 0);
    assert_int_equal(dp_tls_read(p.s, buf, sizeof(buf)), 0);
    pair_done(&p);
    dp_identity_unref(a);
    dp_identity_unref(b);
}

static void test_mtls_server_expired(void **state)
{
    struct dp_identity *a = fx_identity(ca, ID_A, -60, 3600);
    struct dp_identity *b = fx_identity(ca, ID_B, -7200, -3600);
    struct pair p;
    (void)state;

    pair_run(&p, a, b, ID_B);
    assert_int_equal(p.rc, -ECONNREFUSED);
    assert_string_equal(dp_tls_error(p.c), "peer certificate expired");
    assert_int_equal(p.rs, -ECONNREFUSED);
    assert_non_null(strstr(dp_tls_error(p.s), "tls alert: certificate expired"));
    pair_done(&p);
    dp_identity_unref(a);
    dp_identity_unref(b);
}

static void test_mtls_client_expired(void **state)
{
    struct dp_identity *a = fx_identity(ca, ID_A, -7200, -3600);
    struct dp_identity *b = fx_identity(ca, ID_B, -60, 3600);
    struct pair p;
    (void)state;

    pair_run(&p, a, b, ID_B);
    assert_int_equal(p.rs, -ECONNREFUSED);
    assert_string_equal(dp_tls_error(p.s), "peer certificate expired");
    if (p.rc == 0)
        assert_true(client_read_result(&p) < 0);
    assert_non_null(strstr(dp_tls_error(p.c), "certificate expired"));
    pair_done(&p);
    dp_identity_unref(a);
    dp_identity_unref(b);
}

static void test_mtls_foreign_ca(void **state)
{
    struct dp_identity *a = fx_identity(ca, ID_A, -60, 3600);
    struct dp_identity *b = fx_identity(ca2, ID_B, -60, 3600);
    struct pair p;
    (void)state;

    /* server cert from a CA the client does not trust */
    pair_run(&p, a, b, ID_B);
    assert_int_equal(p.rc, -ECONNREFUSED);
    assert_string_equal(dp_tls_error(p.c), "unknown CA");
    pair_done(&p);

    /* client cert from a CA the server does not trust (and client does not trust server) */
    pair_run(&p, b, a, ID_A);
    assert_int_equal(p.rc, -ECONNREFUSED);
    assert_string_equal(dp_tls_error(p.c), "unknown CA");
    pair_done(&p);
    dp_identity_unref(a);
    dp_identity_unref(b);
}

static void test_mtls_foreign_client_only(void **state)
{
    /* client trusts the server's CA (ca) but presents a ca2 cert */
    struct dp_identity *b = fx_identity(ca, ID_B, -60, 3600);
    struct dp_identity *a = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null(), *roots = sk_X509_new_null();
    struct pair p;
    (void)state;

    assert_int_equal(dp_ca_issue(ca2, ID_A, 3600, &key, &cert), 0);
    sk_X509_push(chain, cert);
    X509_add_cert(roots, ca->cert, X509_ADD_FLAG_UP_REF);
    assert_int_equal(dp_identity_new(key, chain, roots, &a, NULL), 0);
    pair_run(&p, a, b, ID_B);
    assert_int_equal(p.rs, -ECONNREFUSED);
    assert_string_equal(dp_tls_error(p.s), "unknown CA");
    if (p.rc == 0)
        assert_true(client_read_result(&p) < 0);
    assert_non_null(strstr(dp_tls_error(p.c), "tls alert"));
    pair_done(&p);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(roots, X509_free);
    EVP_PKEY_free(key);
    dp_identity_unref(a);
    dp_identity_unref(b);
}

static void test_mtls_wrong_san(void **state)
{
    struct dp_identity *a = fx_identity(ca, ID_A, -60, 3600);
    struct dp_identity *b = fx_identity(ca, ID_B, -60, 3600);
    struct pair p;
    (void)state;

    pair_run(&p, a, b, "spiffe://cluster.local/ns/default/sa/c");
    assert_int_equal(p.rc, -ECONNREFUSED);
    assert_string_equal(dp_tls_error(p.c),
                        "SAN mismatch: got " ID_B " want spiffe://cluster.local/ns/default/sa/c");
    pair_done(&p);

    /* several expected SANs: any one matches */
    const char *sans[] = {"spiffe://cluster.local/ns/x/sa/y", ID_B};
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p.fds), 0);
    fx_nonblock(p.fds[0]);
    fx_nonblock(p.fds[1]);
    assert_int_equal(dp_tls_new(a, DP_TLS_CLIENT, p.fds[0], sans, 2, &p.c), 0);
    assert_int_equal(dp_tls_new(b, DP_TLS_SERVER, p.fds[1], NULL, 0, &p.s), 0);
    fx_handshake_pair(p.c, p.s, &p.rc, &p.rs);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.rs, 0);
    assert_string_equal(dp_tls_peer_id(p.c), ID_B);
    pair_done(&p);
    dp_identity_unref(a);
    dp_identity_unref(b);
}

static void test_mtls_other_trust_domain(void **state)
{
    /* same CA, but the client's SAN is in another trust domain: the server refuses */
    struct dp_identity *a = fx_identity(ca_other_td, ID_OT, -60, 3600);
    struct dp_identity *b = fx_identity(ca, ID_B, -60, 3600);
    struct pair p;
    (void)state;

    pair_run(&p, a, b, ID_B);
    assert_int_equal(p.rs, -ECONNREFUSED);
    assert_non_null(strstr(dp_tls_error(p.s), "no SPIFFE SAN in trust domain cluster.local"));
    pair_done(&p);
    dp_identity_unref(a);
    dp_identity_unref(b);
}

static void test_mtls_missing_client_cert(void **state)
{
    struct dp_identity *b = fx_identity(ca, ID_B, -60, 3600);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    struct dp_tls *s = NULL;
    SSL *cssl;
    int fds[2], rs = -EAGAIN, rc = -1;
    static const unsigned char alpn[] = {2, 'h', '2'};
    (void)state;

    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn));
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    fx_nonblock(fds[0]);
    fx_nonblock(fds[1]);
    cssl = SSL_new(ctx);
    SSL_set_fd(cssl, fds[0]);
    SSL_set_connect_state(cssl);
    assert_int_equal(dp_tls_new(b, DP_TLS_SERVER, fds[1], NULL, 0, &s), 0);
    for (int i = 0; i < 1000 && rs == -EAGAIN; i++) {
        if (rc != 1)
            rc = SSL_do_handshake(cssl);
        rs = dp_tls_handshake(s);
    }
    assert_int_equal(rs, -ECONNREFUSED);
    assert_string_equal(dp_tls_error(s), "peer did not present a certificate");
    dp_tls_free(s);
    SSL_free(cssl);
    SSL_CTX_free(ctx);
    close(fds[0]);
    close(fds[1]);
    dp_identity_unref(b);
}

static void test_intermediate_chain(void **state)
{
    struct dp_ca *inter = NULL;
    (void)state;

    assert_int_equal(dp_ca_new_intermediate(ca, "ambit intermediate", 10, &inter), 0);
    struct dp_identity *a = fx_identity(inter, ID_A, -60, 3600);
    struct dp_identity *b = fx_identity(ca, ID_B, -60, 3600);
    struct pair p;
    assert_non_null(a);
    pair_run(&p, a, b, ID_B);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.rs, 0);
    assert_string_equal(dp_tls_peer_id(p.s), ID_A);
    pair_done(&p);
    dp_identity_unref(a);
    dp_identity_unref(b);
    dp_ca_free(inter);
}

static void test_identity_files(void **state)
{
    char dir[] = "/tmp/amb-tls-XXXXXX", kp[64], cp[64], rp[64];
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char *kpem = NULL, *cpem = NULL, *rpem = NULL;
    struct dp_identity *id = NULL;
    const char *err = NULL;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(kp, sizeof(kp), "%s/key.pem", dir);
    snprintf(cp, sizeof(cp), "%s/cert-chain.pem", dir);
    snprintf(rp, sizeof(rp), "%s/root-cert.pem", dir);
    assert_int_equal(dp_ca_issue(ca, ID_A, 600, &key, &cert), 0);
    assert_int_equal(dp_pem_key_to_pem(key, &kpem), 0);
    assert_int_equal(dp_pem_cert_to_pem(cert, &cpem), 0);
    assert_int_equal(dp_pem_cert_to_pem(ca->cert, &rpem), 0);
    assert_int_equal(dp_pem_write_file(kp, kpem, 0600), 0);
    assert_int_equal(dp_pem_write_file(cp, cpem, 0644), 0);
    assert_int_equal(dp_pem_write_file(rp, rpem, 0644), 0);
    assert_int_equal(dp_identity_load_files(kp, cp, rp, &id, &err), 0);
    assert_string_equal(dp_identity_name(id), ID_A);
    dp_identity_unref(id);
    assert_int_equal(dp_identity_load_files("/nonexistent", cp, rp, &id, &err), -ENOENT);
    /* CA from files */
    struct dp_ca *ca3 = NULL;
    char *capem = NULL;
    assert_int_equal(dp_pem_key_to_pem(ca->key, &capem), 0);
    assert_int_equal(dp_pem_write_file(kp, capem, 0600), 0);
    assert_int_equal(dp_ca_load_files(kp, rp, NULL, &ca3), 0);
    dp_ca_free(ca3);
    unlink(kp);
    unlink(cp);
    unlink(rp);
    rmdir(dir);
    free(capem);
    free(kpem);
    free(cpem);
    free(rpem);
    X509_free(cert);
    EVP_PKEY_free(key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_spiffe_parse),
            cmocka_unit_test(test_ca_csr),
            cmocka_unit_test(test_ca_refuses_bad_csrs),
            cmocka_unit_test(test_idstore),
            cmocka_unit_test(test_mtls_good),
            cmocka_unit_test(test_mtls_server_expired),
            cmocka_unit_test(test_mtls_client_expired),
            cmocka_unit_test(test_mtls_foreign_ca),
            cmocka_unit_test(test_mtls_foreign_client_only),
            cmocka_unit_test(test_mtls_wrong_san),
            cmocka_unit_test(test_mtls_other_trust_domain),
            cmocka_unit_test(test_mtls_missing_client_cert),
            cmocka_unit_test(test_intermediate_chain),
            cmocka_unit_test(test_identity_files),
    };
    return cmocka_run_group_tests_name("tls", tests, group_setup, group_teardown);
}
