/* Skeleton: implementation in progress; every entry point returns -ENOSYS. */
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "ca.h"
#include <errno.h>

int dp_ca_key_new(EVP_PKEY **ret_key)
{
    return -ENOSYS;
}

int dp_ca_new_root(const char *org, unsigned days, struct dp_ca **ret_ca)
{
    return -ENOSYS;
}

int dp_ca_new_intermediate(const struct dp_ca *parent, const char *org, unsigned days,
                           struct dp_ca **ret_ca)
{
    return -ENOSYS;
}

int dp_ca_load_files(const char *key_path, const char *cert_path, const char *chain_path,
                     struct dp_ca **ret_ca)
{
    return -ENOSYS;
}

void dp_ca_free(struct dp_ca *ca)
{
    
}

int dp_ca_csr_new(EVP_PKEY *key, const char *uri, X509_REQ **ret_csr)
{
    return -ENOSYS;
}

int dp_ca_csr_uri(X509_REQ *csr, char **ret_uri)
{
    return -ENOSYS;
}

int dp_ca_sign_csr(const struct dp_ca *ca, X509_REQ *csr, int64_t not_before, int64_t not_after,
                   X509 **ret_cert)
{
    return -ENOSYS;
}

int dp_ca_issue(const struct dp_ca *ca, const char *uri, int64_t ttl_s, EVP_PKEY **ret_key,
                X509 **ret_cert)
{
    return -ENOSYS;
}

int dp_ca_sign_csr_pem(const struct dp_ca *ca, const char *csr_pem, size_t csr_len,
                       int64_t ttl_s, char **ret_chain_pem, char **ret_uri)
{
    return -ENOSYS;
}

int dp_pem_key_to_pem(EVP_PKEY *key, char **ret_pem)
{
    return -ENOSYS;
}

int dp_pem_cert_to_pem(X509 *cert, char **ret_pem)
{
    return -ENOSYS;
}

int dp_pem_csr_to_pem(X509_REQ *csr, char **ret_pem)
{
    return -ENOSYS;
}

int dp_pem_write_file(const char *path, const char *pem, unsigned mode)
{
    return -ENOSYS;
}

