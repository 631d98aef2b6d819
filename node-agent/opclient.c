/*
 * opclient.c — operator config stream (own thread, blocking libcurl) and the CSR identity
 * provider.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "agent.h"
#include "ca.h"
#include "identity.h"
#include "log.h"
#include "mesh.h"
#include "opclient.h"
#include "dataplane/opclient.h"
#include "tls.h"
#include "view.h"


static char *dupz(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void to_dp_cfg(const struct na_opclient_config *in, struct dp_opclient_cfg *out)
{
    *out = (struct dp_opclient_cfg){.url = in->url, .root_cert = in->ca_file,
                                    .token_file = in->token_file, .timeout_ms = 5000};
}

/* ------------------------------------------------------------------ config stream */

struct na_opclient {
    struct na_agent *a;
    struct na_opclient_config cfg; /* strings owned */
    struct dp_opstream *op;        /* transport: dataplane/opclient */
    atomic_uint_fast64_t version;
    struct dp_mesh_stream *stream; /* only touched on the dp_opstream thread */
    unsigned rejected;
};

/* on the dp_opstream thread: fold the event in, publish on `synced` */
static void on_event(const json_t *ev, long http, const char *why, void *arg)
{
    struct na_opclient *c = arg;
    if (!ev) {
        dp_warn("node", "operator config stream ended, keeping the last good config",
                DP_LS("url", c->cfg.url), DP_LI("status", http), DP_LS("reason", why ? why : ""));
        return;
    }
    struct dp_mesh_snapshot *snap = NULL;
    char err[512] = "";
    int r = dp_mesh_stream_feed(c->stream, ev, &snap, err, sizeof(err));
    if (r == DP_MESH_FEED_PUBLISHED) {
        uint64_t v = dp_mesh_snapshot_version(snap);
        na_view_set(c->a, snap);
        if (atomic_exchange(&c->version, v) == 0)
            dp_info("node", "operator config synced", DP_LU("version", v));
        else
            dp_debug("node", "operator config updated", DP_LU("version", v));
    } else if (r < 0) {
        c->rejected++;
        dp_warn("node", "operator config event rejected, keeping the previous state",
                DP_LS("reason", err), DP_LERR(r));
    }
}

static void cfg_copy_free(struct na_opclient_config *c)
{
    free((char *)c->url);
    free((char *)c->token_file);
    free((char *)c->ca_file);
    free((char *)c->node);
}

static int cfg_copy(const struct na_opclient_config *in, struct na_opclient_config *out)
{
    out->url = dupz(in->url);
    out->token_file = dupz(in->token_file);
    out->ca_file = dupz(in->ca_file);
    out->node = dupz(in->node ? in->node : "");
    if (!out->url || !out->node || (in->token_file && !out->token_file) ||
        (in->ca_file && !out->ca_file)) {
        cfg_copy_free(out);
        return -ENOMEM;
    }
    /* no trailing slash, so paths join cleanly */
    size_t l = strlen(out->url);
    while (l > 0 && out->url[l - 1] == '/')
        ((char *)out->url)[--l] = '\0';
    return 0;
}

int na_opclient_start(struct na_agent *a, const struct na_opclient_config *cfg,
                      struct na_opclient **ret_c)
{
    struct na_opclient *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->a = a;
    int ret = cfg_copy(cfg, &c->cfg);
    if (ret < 0)
        goto fail;
    /* the file config (if any) is the base the stream's objects are folded onto */
    struct na_view *v = na_view_get(a);
    ret = dp_mesh_stream_new((const struct dp_mesh_snapshot *)v, &c->stream);
    na_view_put(v);
    if (ret < 0)
        goto fail_cfg;
    struct dp_opclient_cfg dc;
    to_dp_cfg(&c->cfg, &dc);
    ret = dp_opstream_start(&dc, c->cfg.node, on_event, c, &c->op);
    if (ret < 0)
        goto fail_stream;
    *ret_c = c;
    return 0;
fail_stream:
    dp_mesh_stream_free(c->stream);
fail_cfg:
    cfg_copy_free(&c->cfg);
fail:
    free(c);
    return ret;
}

void na_opclient_stop(struct na_opclient *c)
{
    if (!c)
        return;
    dp_opstream_stop(c->op); /* joins: no callback after this */
    dp_mesh_stream_free(c->stream);
    cfg_copy_free(&c->cfg);
    free(c);
}

uint64_t na_opclient_version(const struct na_opclient *c)
{
    return c ? atomic_load(&c->version) : 0;
}

/* ------------------------------------------------------------------ CSR identity provider */

struct op_idp {
    struct na_opclient_config cfg;
    unsigned ttl_s;
};

static int op_issue(struct na_identity *self, const char *spiffe, struct dp_identity **ret_id)
{
    struct op_idp *o = self->priv;
    struct dp_opclient_cfg dc;
    char *key_pem = NULL, *chain = NULL, err[512] = "";
    json_t *arr = NULL;
    int ret;

    to_dp_cfg(&o->cfg, &dc);
    ret = dp_opclient_fetch_cert(&dc, spiffe, o->ttl_s, &key_pem, &arr, err, sizeof(err));
    if (ret < 0) {
        dp_warn("node", "certificate request failed", DP_LS("identity", spiffe),
                DP_LS("reason", err), DP_LERR(ret));
        return ret;
    }
    /* chain = every element (leaf first); roots = the last one */
    size_t n = json_array_size(arr), total = 0, off = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s) {
            ret = -EBADMSG;
            goto out;
        }
        total += strlen(s) + 1;
    }
    chain = malloc(total + 1);
    if (!chain) {
        ret = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        size_t l = strlen(s);
        memcpy(chain + off, s, l);
        off += l;
        if (l == 0 || s[l - 1] != '\n')
            chain[off++] = '\n';
    }
    chain[off] = '\0';
    const char *root = json_string_value(json_array_get(arr, n - 1));
    const char *why = NULL;
    ret = dp_identity_from_pem(key_pem, strlen(key_pem), chain, off, root, strlen(root), ret_id,
                               &why);
    if (ret < 0)
        dp_warn("node", "certificate from the operator unusable", DP_LS("identity", spiffe),
                DP_LS("reason", why ? why : ""));
out:
    json_decref(arr);
    free(chain);
    OPENSSL_cleanse(key_pem, strlen(key_pem));
    free(key_pem);
    return ret;
}

static void op_free(struct na_identity *self)
{
    struct op_idp *o = self->priv;
    if (!o)
        return;
    cfg_copy_free(&o->cfg);
    free(o);
}

static const struct na_identity_ops op_ops = {
        .name = "operator",
        .issue = op_issue,
        .free = op_free,
};

int na_identity_operator_new(const struct na_opclient_config *cfg, unsigned ttl_s,
                             struct na_identity **ret_idp)
{
    struct na_identity *idp = calloc(1, sizeof(*idp));
    struct op_idp *o = calloc(1, sizeof(*o));
    int ret = -ENOMEM;
    if (!idp || !o)
        goto fail;
    ret = cfg_copy(cfg, &o->cfg);
    if (ret < 0)
        goto fail;
    ret = dp_idstore_new(&idp->store);
    if (ret < 0) {
        cfg_copy_free(&o->cfg);
        goto fail;
    }
    o->ttl_s = ttl_s ? ttl_s : 86400;
    pthread_mutex_init(&idp->issue_mu, NULL);
    idp->ops = &op_ops;
    idp->priv = o;
    *ret_idp = idp;
    return 0;
fail:
    free(o);
    free(idp);
    return ret;
}
