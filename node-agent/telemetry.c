/*
 * telemetry.c — label sets are formatted once per connection into their Prometheus form
 * (`k="v",...`), which doubles as the hash key of the series table.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "common.h"
#include "log.h"
#include "telemetry.h"

#define NBUCKETS   512
#define MAX_SERIES 20000
#define LABELS_MAX 4096

enum { M_OPENED, M_CLOSED, M_SENT, M_RECV, M_FAILED, M_COUNT };

static const char *const metric_names[M_COUNT] = {
        "istio_tcp_connections_opened_total",
        "istio_tcp_connections_closed_total",
        "istio_tcp_sent_bytes_total",
        "istio_tcp_received_bytes_total",
        "istio_tcp_connections_failed_total",
};
static const char *const metric_help[M_COUNT] = {
        "The total number of TCP connections opened",
        "The total number of TCP connections closed",
        "The size of total bytes sent during response in case of a TCP connection",
        "The size of total bytes received during request in case of a TCP connection",
        "The total number of TCP connections that failed to establish (refused, denied, "
        "no upstream)",
};

struct series {
    struct series *next;
    uint64_t hash;
    uint64_t v[M_COUNT];
    char labels[]; /* NUL-terminated */
};

struct na_telemetry {
    pthread_mutex_t mu;
    struct series *b[NBUCKETS];
    unsigned nseries;
    uint64_t dropped;
};

int na_telemetry_new(struct na_telemetry **ret_tel)
{
    struct na_telemetry *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    pthread_mutex_init(&t->mu, NULL);
    *ret_tel = t;
    return 0;
}

void na_telemetry_free(struct na_telemetry *tel)
{
    if (!tel)
        return;
    for (int i = 0; i < NBUCKETS; i++) {
        struct series *s = tel->b[i];
        while (s) {
            struct series *n = s->next;
            free(s);
            s = n;
        }
    }
    pthread_mutex_destroy(&tel->mu);
    free(tel);
}

const char *na_addr_str(const struct sockaddr *sa, char *out, size_t outsz)
{
    char ip[INET6_ADDRSTRLEN] = "";
    out[0] = '\0';
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        snprintf(out, outsz, "%s:%u", ip, ntohs(s4->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        snprintf(out, outsz, "[%s]:%u", ip, ntohs(s6->sin6_port));
    }
    return out;
}

/* append k="v" with Prometheus escaping; unknown/empty -> "unknown" */
static void lbl(char *out, size_t *pos, const char *k, const char *v)
{
    if (!v || !*v)
        v = "unknown";
    size_t p = *pos;
    int n = snprintf(out + p, LABELS_MAX - p, "%s%s=\"", p ? "," : "", k);
    if (n < 0 || (size_t)n >= LABELS_MAX - p)
        return;
    p += (size_t)n;
    for (const char *c = v; *c && p + 3 < LABELS_MAX; c++) {
        if (*c == '\\' || *c == '"') {
            out[p++] = '\\';
            out[p++] = *c;
        } else if (*c == '\n') {
            out[p++] = '\\';
            out[p++] = 'n';
        } else {
            out[p++] = *c;
        }
    }
    if (p + 1 < LABELS_MAX)
        out[p++] = '"';
    out[p] = '\0';
    *pos = p;
}

static void build_labels(const struct na_conn_tel *c, const char *flags, char *out)
{
    size_t p = 0;
    out[0] = '\0';
    const struct na_wl *s = c->has_src_wl ? &c->src_wl : NULL;
    const struct na_wl *d = c->has_dst_wl ? &c->dst_wl : NULL;
    lbl(out, &p, "reporter", c->outbound ? "source" : "destination");
    lbl(out, &p, "source_workload", s ? s->workload_name : NULL);
    lbl(out, &p, "source_canonical_service", s ? s->canonical_name : NULL);
    lbl(out, &p, "source_canonical_revision", s ? s->canonical_revision : NULL);
    lbl(out, &p, "source_workload_namespace", s ? s->ns : NULL);
    lbl(out, &p, "source_principal", c->src_identity);
    lbl(out, &p, "source_app", s ? s->app : NULL);
    lbl(out, &p, "source_version", s ? s->version : NULL);
    lbl(out, &p, "source_cluster", s ? s->cluster : NULL);
    lbl(out, &p, "destination_service", c->has_svc ? c->svc.hostname : NULL);
    lbl(out, &p, "destination_service_namespace", c->has_svc ? c->svc.ns : NULL);
    lbl(out, &p, "destination_service_name", c->has_svc ? c->svc.name : NULL);
    lbl(out, &p, "destination_workload", d ? d->workload_name : NULL);
    lbl(out, &p, "destination_canonical_service", d ? d->canonical_name : NULL);
    lbl(out, &p, "destination_canonical_revision", d ? d->canonical_revision : NULL);
    lbl(out, &p, "destination_workload_namespace", d ? d->ns : NULL);
    lbl(out, &p, "destination_principal", c->dst_identity);
    lbl(out, &p, "destination_app", d ? d->app : NULL);
    lbl(out, &p, "destination_version", d ? d->version : NULL);
    lbl(out, &p, "destination_cluster", d ? d->cluster : NULL);
    lbl(out, &p, "request_protocol", "tcp");
    lbl(out, &p, "response_flags", flags && *flags ? flags : "-");
    lbl(out, &p, "connection_security_policy", c->mtls ? "mutual_tls" : "unknown");
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

/* returns the series (stable until na_telemetry_free) or NULL when the table is full */
static struct series *add(struct na_telemetry *t, const char *labels, int m, uint64_t v,
                          int m2, uint64_t v2, int m3, uint64_t v3)
{
    uint64_t h = fnv1a(labels);
    pthread_mutex_lock(&t->mu);
    struct series **slot = &t->b[h % NBUCKETS], *s;
    for (s = *slot; s; s = s->next)
        if (s->hash == h && strcmp(s->labels, labels) == 0)
            break;
    if (!s) {
        size_t len = strlen(labels);
        if (t->nseries >= MAX_SERIES || !(s = calloc(1, sizeof(*s) + len + 1))) {
            t->dropped++;
            pthread_mutex_unlock(&t->mu);
            return NULL;
        }
        s->hash = h;
        memcpy(s->labels, labels, len + 1);
        s->next = *slot;
        *slot = s;
        t->nseries++;
    }
    s->v[m] += v;
    if (m2 >= 0)
        s->v[m2] += v2;
    if (m3 >= 0)
        s->v[m3] += v3;
    pthread_mutex_unlock(&t->mu);
    return s;
}

void na_tel_open(struct na_telemetry *tel, struct na_conn_tel *c)
{
    char labels[LABELS_MAX];
    build_labels(c, "-", labels);
    c->series = add(tel, labels, M_OPENED, 1, -1, 0, -1, 0);
    c->opened = true;
}

void na_tel_close(struct na_telemetry *tel, struct na_conn_tel *c, uint64_t rx, uint64_t tx,
                  const char *flags, const char *error)
{
    bool failed = error && *error;
    char labels[LABELS_MAX];
    bool clean = !flags || !*flags || strcmp(flags, "-") == 0;
    if (c->opened && clean && c->series) {
        /* same label set as at open: no formatting, no hashing */
        struct series *s = c->series;
        pthread_mutex_lock(&tel->mu);
        s->v[M_CLOSED] += 1;
        s->v[M_RECV] += rx;
        s->v[M_SENT] += tx;
        pthread_mutex_unlock(&tel->mu);
    } else if (c->opened) {
        build_labels(c, flags, labels);
        add(tel, labels, M_CLOSED, 1, M_RECV, rx, M_SENT, tx);
    } else if (failed) {
        build_labels(c, flags, labels);
        add(tel, labels, M_FAILED, 1, -1, 0, -1, 0);
    }
    char src[64], dst[64], hb[64], dur[32];
    na_addr_str((const struct sockaddr *)&c->src, src, sizeof(src));
    na_addr_str((const struct sockaddr *)&c->dst, dst, sizeof(dst));
    na_addr_str((const struct sockaddr *)&c->hbone_target, hb, sizeof(hb));
    uint64_t now = dp_now_ms();
    snprintf(dur, sizeof(dur), "%llums",
             (unsigned long long)(now >= c->start_ms ? now - c->start_ms : 0));
    const struct na_wl *s = c->has_src_wl ? &c->src_wl : NULL;
    const struct na_wl *d = c->has_dst_wl ? &c->dst_wl : NULL;
    const char *msg = failed && !c->opened ? "connection failed" : "connection complete";
    enum dp_log_level lvl = failed ? DP_LOG_WARN : DP_LOG_INFO;
    if (!dp_log_enabled(lvl, "access"))
        return;
    const struct dp_log_field f[] = {
            DP_LS("src.addr", src),
            DP_LS("src.workload", s ? s->name : ""),
            DP_LS("src.namespace", s ? s->ns : ""),
            DP_LS("src.identity", c->src_identity),
            DP_LS("dst.addr", dst),
            DP_LS("dst.hbone_addr", hb),
            DP_LS("dst.service", c->has_svc ? c->svc.hostname : ""),
            DP_LS("dst.workload", d ? d->name : ""),
            DP_LS("dst.namespace", d ? d->ns : ""),
            DP_LS("dst.identity", c->dst_identity),
            DP_LS("direction", c->outbound ? "outbound" : "inbound"),
            DP_LU("bytes_sent", rx),
            DP_LU("bytes_recv", tx),
            DP_LS("duration", dur),
            DP_LS("response_flags", flags && *flags ? flags : "-"),
            DP_LS("error", failed ? error : ""),
    };
    /* the error field is only emitted on failure, like ztunnel */
    dp_log_emit(lvl, "access", msg, f, failed ? DP_ARRAY_SIZE(f) : DP_ARRAY_SIZE(f) - 1);
}

int na_telemetry_render(struct na_telemetry *tel, struct dp_buf **out)
{
    int ret = 0;
    pthread_mutex_lock(&tel->mu);
    for (int m = 0; m < M_COUNT && ret >= 0; m++) {
        ret = dp_buf_appendf(out, "# HELP %s %s.\n# TYPE %s counter\n", metric_names[m],
                             metric_help[m], metric_names[m]);
        for (int i = 0; i < NBUCKETS && ret >= 0; i++)
            for (struct series *s = tel->b[i]; s && ret >= 0; s = s->next)
                if (s->v[m] != 0) /* one table row serves every metric: skip absent series */
                    ret = dp_buf_appendf(out, "%s{%s} %llu\n", metric_names[m], s->labels,
                                         (unsigned long long)s->v[m]);
    }
    uint64_t dropped = tel->dropped;
    pthread_mutex_unlock(&tel->mu);
    if (ret >= 0)
        ret = dp_buf_appendf(out,
                             "# HELP istio_build Istio component build info.\n"
                             "# TYPE istio_build gauge\n"
                             "istio_build{component=\"ztunnel\",tag=\"ambit\"} 1\n"
                             "# HELP ambit_telemetry_series_dropped_total Series not recorded "
                             "(table full).\n"
                             "# TYPE ambit_telemetry_series_dropped_total counter\n"
                             "ambit_telemetry_series_dropped_total %llu\n",
                             (unsigned long long)dropped);
    return ret < 0 ? ret : 0;
}
