/* Skeleton: implementation in progress; every entry point returns -ENOSYS. */
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include "hbone.h"
#include <errno.h>

void dp_hbone_limits_default(struct dp_hbone_limits *lim)
{
    
}

int dp_hbone_accept(struct dp_loop *loop, int fd, struct dp_identity *id,
                    const struct dp_hbone_limits *lim, const struct dp_hbone_server_ops *ops,
                    void *arg, struct hbc **ret_hbc)
{
    return -ENOSYS;
}

int dp_hbone_accept_insecure(struct dp_loop *loop, int fd, const char *peer_id,
                             const struct dp_hbone_limits *lim,
                             const struct dp_hbone_server_ops *ops, void *arg, struct hbc **ret_hbc)
{
    return -ENOSYS;
}

int dp_hbone_pool_new(struct dp_loop *loop, const struct dp_hbone_limits *lim,
                      struct dp_hbone_pool **ret_pool)
{
    return -ENOSYS;
}

void dp_hbone_pool_free(struct dp_hbone_pool *pool)
{
    
}

void dp_hbone_pool_drain(struct dp_hbone_pool *pool)
{
    
}

void dp_hbone_pool_counts(const struct dp_hbone_pool *pool, unsigned *ret_conns,
                          unsigned *ret_streams)
{
    
}

int dp_hbone_open(struct dp_hbone_pool *pool, const struct dp_hbone_target *t,
                  const struct dp_hbone_connect *req, int app_fd, dp_hbs_response_cb *on_response,
                  dp_hbs_done_cb *on_done, void *arg, struct hbs **ret_hbs)
{
    return -ENOSYS;
}

void dp_hbs_abort(struct hbs *s, const char *reason)
{
    
}

void dp_hbc_drain(struct hbc *c)
{
    
}

int dp_hbone_parse_authority(const char *s, size_t len, struct sockaddr_storage *ret_addr,
                             socklen_t *ret_len, const char **ret_err)
{
    return -ENOSYS;
}

void dp_hbone_traceparent(char out[56])
{
    
}

