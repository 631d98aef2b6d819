/*
 * mesh.c - SKELETON: every function is a placeholder (int functions return -ENOSYS, pointer
 * functions NULL, predicates false) until the implementation lands later this session.
 */
#include <errno.h>

#include "mesh.h"

int dp_mesh_ip_parse(const char *s, struct dp_mesh_ip *ret_ip)
{
    (void)s;
    (void)ret_ip;
    return -ENOSYS;
}

int dp_mesh_cidr_parse(const char *s, struct dp_mesh_cidr *ret_cidr)
{
    (void)s;
    (void)ret_cidr;
    return -ENOSYS;
}

const char *dp_mesh_ip_format(const struct dp_mesh_ip *ip, char *buf, size_t bufsz)
{
    (void)ip;
    (void)buf;
    (void)bufsz;
    return NULL;
}

int dp_mesh_ip_from_sockaddr(const struct sockaddr *sa, struct dp_mesh_ip *ret_ip, uint16_t *ret_port)
{
    (void)sa;
    (void)ret_ip;
    (void)ret_port;
    return -ENOSYS;
}

bool dp_mesh_ip_equal(const struct dp_mesh_ip *a, const struct dp_mesh_ip *b)
{
    (void)a;
    (void)b;
    return false;
}

bool dp_mesh_cidr_contains(const struct dp_mesh_cidr *c, const struct dp_mesh_ip *ip)
{
    (void)c;
    (void)ip;
    return false;
}

const char *dp_mesh_kind_str(enum dp_mesh_kind kind)
{
    (void)kind;
    return NULL;
}

int dp_mesh_kind_parse(const char *s, enum dp_mesh_kind *ret_kind)
{
    (void)s;
    (void)ret_kind;
    return -ENOSYS;
}

const char *dp_mesh_scope_str(enum dp_mesh_scope s)
{
    (void)s;
    return NULL;
}

const char *dp_mesh_action_str(enum dp_mesh_action a)
{
    (void)a;
    return NULL;
}

int dp_mesh_object_decode(enum dp_mesh_kind kind, const json_t *json, const char *key, const char *path, void **ret_obj, char *errbuf, size_t errsz)
{
    (void)kind;
    (void)json;
    (void)key;
    (void)path;
    (void)ret_obj;
    (void)errbuf;
    (void)errsz;
    return -ENOSYS;
}

json_t *dp_mesh_object_encode(enum dp_mesh_kind kind, const void *obj)
{
    (void)kind;
    (void)obj;
    return NULL;
}

void dp_mesh_object_ref(enum dp_mesh_kind kind, const void *obj)
{
    (void)kind;
    (void)obj;
    return;
}

void dp_mesh_object_unref(enum dp_mesh_kind kind, const void *obj)
{
    (void)kind;
    (void)obj;
    return;
}

const char *dp_mesh_object_key(enum dp_mesh_kind kind, const void *obj)
{
    (void)kind;
    (void)obj;
    return NULL;
}

int dp_mesh_workload_identity(const struct dp_mesh_workload *w, char *buf, size_t bufsz)
{
    (void)w;
    (void)buf;
    (void)bufsz;
    return -ENOSYS;
}

const char *dp_mesh_workload_label(const struct dp_mesh_workload *w, const char *key)
{
    (void)w;
    (void)key;
    return NULL;
}

const struct dp_mesh_svc_ref *dp_mesh_workload_svc_ref(const struct dp_mesh_workload *w, const char *svc_key)
{
    (void)w;
    (void)svc_key;
    return NULL;
}

struct dp_mesh_snapshot *dp_mesh_snapshot_new_empty(void)
{
    return NULL;
}

struct dp_mesh_snapshot *dp_mesh_snapshot_ref(struct dp_mesh_snapshot *s)
{
    (void)s;
    return NULL;
}

void dp_mesh_snapshot_unref(struct dp_mesh_snapshot *s)
{
    (void)s;
    return;
}

int dp_mesh_snapshot_from_json(const json_t *config, struct dp_mesh_snapshot **ret_snap, char *errbuf, size_t errsz)
{
    (void)config;
    (void)ret_snap;
    (void)errbuf;
    (void)errsz;
    return -ENOSYS;
}

int dp_mesh_snapshot_load_file(const char *path, struct dp_mesh_snapshot **ret_snap, char *errbuf, size_t errsz)
{
    (void)path;
    (void)ret_snap;
    (void)errbuf;
    (void)errsz;
    return -ENOSYS;
}

int dp_mesh_snapshot_apply(const struct dp_mesh_snapshot *base, const json_t *events, struct dp_mesh_snapshot **ret_snap, char *errbuf, size_t errsz)
{
    (void)base;
    (void)events;
    (void)ret_snap;
    (void)errbuf;
    (void)errsz;
    return -ENOSYS;
}

json_t *dp_mesh_snapshot_to_json(const struct dp_mesh_snapshot *s)
{
    (void)s;
    return NULL;
}

uint64_t dp_mesh_snapshot_version(const struct dp_mesh_snapshot *s)
{
    (void)s;
    return 0;
}

const struct dp_mesh_workload *dp_mesh_workload_by_key(const struct dp_mesh_snapshot *s, const char *key)
{
    (void)s;
    (void)key;
    return NULL;
}

const struct dp_mesh_workload *dp_mesh_workload_by_pod_uid(const struct dp_mesh_snapshot *s, const char *pod_uid)
{
    (void)s;
    (void)pod_uid;
    return NULL;
}

const struct dp_mesh_workload *dp_mesh_workload_by_ip(const struct dp_mesh_snapshot *s, const struct dp_mesh_ip *ip)
{
    (void)s;
    (void)ip;
    return NULL;
}

const struct dp_mesh_service *dp_mesh_service_by_key(const struct dp_mesh_snapshot *s, const char *key)
{
    (void)s;
    (void)key;
    return NULL;
}

const struct dp_mesh_service *dp_mesh_service_by_vip(const struct dp_mesh_snapshot *s, const struct dp_mesh_ip *vip)
{
    (void)s;
    (void)vip;
    return NULL;
}

const struct dp_mesh_policy *dp_mesh_policy_by_key(const struct dp_mesh_snapshot *s, const char *key)
{
    (void)s;
    (void)key;
    return NULL;
}

const struct dp_mesh_waypoint *dp_mesh_waypoint_by_key(const struct dp_mesh_snapshot *s, const char *key)
{
    (void)s;
    (void)key;
    return NULL;
}

size_t dp_mesh_service_endpoints(const struct dp_mesh_snapshot *s, const char *svc_key, const struct dp_mesh_workload *const **ret_list)
{
    (void)s;
    (void)svc_key;
    (void)ret_list;
    return 0;
}

size_t dp_mesh_snapshot_workloads(const struct dp_mesh_snapshot *s, const struct dp_mesh_workload *const **ret_list)
{
    (void)s;
    (void)ret_list;
    return 0;
}

size_t dp_mesh_snapshot_services(const struct dp_mesh_snapshot *s, const struct dp_mesh_service *const **ret_list)
{
    (void)s;
    (void)ret_list;
    return 0;
}

size_t dp_mesh_snapshot_policies(const struct dp_mesh_snapshot *s, const struct dp_mesh_policy *const **ret_list)
{
    (void)s;
    (void)ret_list;
    return 0;
}

size_t dp_mesh_snapshot_waypoints(const struct dp_mesh_snapshot *s, const struct dp_mesh_waypoint *const **ret_list)
{
    (void)s;
    (void)ret_list;
    return 0;
}

size_t dp_mesh_namespace_policies(const struct dp_mesh_snapshot *s, const char *ns, const struct dp_mesh_policy *const **ret_list)
{
    (void)s;
    (void)ns;
    (void)ret_list;
    return 0;
}

size_t dp_mesh_global_policies(const struct dp_mesh_snapshot *s, const struct dp_mesh_policy *const **ret_list)
{
    (void)s;
    (void)ret_list;
    return 0;
}

int dp_mesh_stream_new(const struct dp_mesh_snapshot *base, struct dp_mesh_stream **ret_stream)
{
    (void)base;
    (void)ret_stream;
    return -ENOSYS;
}

void dp_mesh_stream_free(struct dp_mesh_stream *st)
{
    (void)st;
    return;
}

int dp_mesh_stream_feed(struct dp_mesh_stream *st, const json_t *event, struct dp_mesh_snapshot **ret_snap, char *errbuf, size_t errsz)
{
    (void)st;
    (void)event;
    (void)ret_snap;
    (void)errbuf;
    (void)errsz;
    return -ENOSYS;
}

int dp_mesh_stream_feed_line(struct dp_mesh_stream *st, const char *line, size_t len, struct dp_mesh_snapshot **ret_snap, char *errbuf, size_t errsz)
{
    (void)st;
    (void)line;
    (void)len;
    (void)ret_snap;
    (void)errbuf;
    (void)errsz;
    return -ENOSYS;
}

uint64_t dp_mesh_stream_version(const struct dp_mesh_stream *st)
{
    (void)st;
    return 0;
}

int dp_mesh_stream_publish(struct dp_mesh_stream *st, struct dp_mesh_snapshot **ret_snap)
{
    (void)st;
    (void)ret_snap;
    return -ENOSYS;
}


int dp_mesh_select_destination(const struct dp_mesh_snapshot *s, const struct dp_mesh_workload *source, const struct dp_mesh_ip *dst, uint16_t port, dp_mesh_rng_fn *rng, void *rng_arg, struct dp_mesh_dest *ret_dest)
{
    (void)s;
    (void)source;
    (void)dst;
    (void)port;
    (void)rng;
    (void)rng_arg;
    (void)ret_dest;
    return -ENOSYS;
}

int dp_mesh_pick_endpoint(const struct dp_mesh_workload *const *list, size_t n, bool allow_unhealthy, dp_mesh_rng_fn *rng, void *rng_arg)
{
    (void)list;
    (void)n;
    (void)allow_unhealthy;
    (void)rng;
    (void)rng_arg;
    return -ENOSYS;
}
