/*
 * render.c — ztunnel-config views: config_dump JSON -> rows with istioctl's columns.
 *
 * Field names follow ztunnel's dump (workloadIps, vips, certChain ...); ambit's mesh-object
 * names (addresses) are accepted too, so either agent's dump renders.
 */
#include "ctl.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "yaml.h"

int ctl_output_parse(const char *s, enum ctl_output *ret)
{
    if (!strcmp(s, "table") || !strcmp(s, "short"))
        *ret = CTL_OUT_TABLE;
    else if (!strcmp(s, "json"))
        *ret = CTL_OUT_JSON;
    else if (!strcmp(s, "yaml"))
        *ret = CTL_OUT_YAML;
    else
        return -EINVAL;
    return 0;
}

int ctl_view_parse(const char *s, enum ctl_view *ret)
{
    static const struct {
        const char *name;
        enum ctl_view v;
    } names[] = {
            {"workloads", CTL_VIEW_WORKLOADS},  {"workload", CTL_VIEW_WORKLOADS},
            {"w", CTL_VIEW_WORKLOADS},          {"services", CTL_VIEW_SERVICES},
            {"service", CTL_VIEW_SERVICES},     {"svc", CTL_VIEW_SERVICES},
            {"policies", CTL_VIEW_POLICIES},    {"policy", CTL_VIEW_POLICIES},
            {"certificates", CTL_VIEW_CERTIFICATES}, {"certificate", CTL_VIEW_CERTIFICATES},
            {"certs", CTL_VIEW_CERTIFICATES},   {"secret", CTL_VIEW_CERTIFICATES},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(s, names[i].name)) {
            *ret = names[i].v;
            return 0;
        }
    return -EINVAL;
}

static const char *str_or(const json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s && *s ? s : dflt;
}

/* comma-joined strings of an array member; "prefix/ip" network prefixes are stripped */
static char *join_ips(const json_t *arr)
{
    size_t i;
    json_t *e;
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f)
        return NULL;
    json_array_foreach(arr, i, e)
    {
        const char *s = json_string_value(e);
        if (!s)
            continue;
        const char *slash = strrchr(s, '/');
        fprintf(f, "%s%s", i ? "," : "", slash ? slash + 1 : s);
    }
    fclose(f);
    return out;
}

static const char *waypoint_name(const json_t *o, char *buf, size_t bufsz)
{
    json_t *wp = json_object_get(o, "waypoint");
    if (!json_is_object(wp))
        return "None";
    const char *d = str_or(wp, "destination", NULL);
    if (!d)
        d = str_or(wp, "key", NULL);
    if (!d)
        d = str_or(wp, "hostname", NULL);
    if (!d)
        return "None";
    /* "ns/name" or "name.ns.svc.cluster.local" -> name */
    const char *slash = strrchr(d, '/');
    snprintf(buf, bufsz, "%s", slash ? slash + 1 : d);
    char *dot = strchr(buf, '.');
    if (dot && !slash)
        *dot = '\0';
    return buf;
}

static int add_row(json_t *rows, const char *const *cells, size_t n)
{
    json_t *row = json_array();
    if (!row)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        json_array_append_new(row, json_string(cells[i] ? cells[i] : ""));
    return json_array_append_new(rows, row) < 0 ? -ENOMEM : 0;
}

static int cmp_rows(const void *a, const void *b)
{
    const json_t *ra = *(json_t *const *)a, *rb = *(json_t *const *)b;
    for (size_t i = 0; i < 2; i++) {
        int c = strcmp(json_string_value(json_array_get(ra, i)) ?: "",
                       json_string_value(json_array_get(rb, i)) ?: "");
        if (c)
            return c;
    }
    return 0;
}

/* sort rows[1..] (row 0 is the header) */
static void sort_rows(json_t *rows)
{
    size_t n = json_array_size(rows);
    if (n < 3)
        return;
    json_t **v = calloc(n - 1, sizeof(*v));
    if (!v)
        return;
    for (size_t i = 1; i < n; i++)
        v[i - 1] = json_incref(json_array_get(rows, i));
    qsort(v, n - 1, sizeof(*v), cmp_rows);
    for (size_t i = 1; i < n; i++)
        json_array_set_new(rows, i, v[i - 1]);
    free(v);
}

static const char *section_of(enum ctl_view view)
{
    switch (view) {
    case CTL_VIEW_WORKLOADS:
        return "workloads";
    case CTL_VIEW_SERVICES:
        return "services";
    case CTL_VIEW_POLICIES:
        return "policies";
    case CTL_VIEW_CERTIFICATES:
    default:
        return "certificates";
    }
}

/* identity key of an item, for de-duplication across node agents */
static const char *item_key(enum ctl_view view, const json_t *it, char *buf, size_t bufsz)
{
    switch (view) {
    case CTL_VIEW_WORKLOADS:
        return str_or(it, "uid", str_or(it, "name", ""));
    case CTL_VIEW_SERVICES:
        snprintf(buf, bufsz, "%s/%s", str_or(it, "namespace", ""), str_or(it, "hostname", ""));
        return buf;
    case CTL_VIEW_POLICIES:
        snprintf(buf, bufsz, "%s/%s", str_or(it, "namespace", ""), str_or(it, "name", ""));
        return buf;
    case CTL_VIEW_CERTIFICATES:
    default:
        return NULL; /* per node: identities can legitimately repeat */
    }
}

/* merged, de-duplicated items of one section across all dumps; new reference */
static json_t *collect(enum ctl_view view, const json_t *dumps)
{
    json_t *items = json_array(), *seen = json_object();
    size_t i, j;
    json_t *d, *it;
    char buf[512];
    json_array_foreach(dumps, i, d)
    {
        json_array_foreach(json_object_get(d, section_of(view)), j, it)
        {
            const char *k = item_key(view, it, buf, sizeof(buf));
            if (k && json_object_get(seen, k))
                continue;
            if (k)
                json_object_set_new(seen, k, json_true());
            json_array_append(items, it);
        }
    }
    json_decref(seen);
    return items;
}

static void fmt_time(const char *rfc3339, char *buf, size_t bufsz)
{
    snprintf(buf, bufsz, "%s", rfc3339 ? rfc3339 : "");
}

static long long parse_time(const char *s)
{
    struct tm tm = {0};
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm))
        return -1;
    return (long long)timegm(&tm);
}

static int cert_rows(json_t *rows, const json_t *cert, long long now)
{
    const char *id = str_or(cert, "identity", "");
    const char *state = str_or(cert, "state", "Available");
    const char *lists[] = {"certChain", "rootCerts"};
    for (size_t l = 0; l < 2; l++) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(cert, lists[l]), i, c)
        {
            char na[64], nb[64];
            const char *exp = str_or(c, "expirationTime", NULL);
            const char *from = str_or(c, "validFrom", NULL);
            long long te = parse_time(exp), tf = parse_time(from);
            bool valid = te > 0 && tf > 0 && now >= tf && now < te;
            fmt_time(exp, na, sizeof(na));
            fmt_time(from, nb, sizeof(nb));
            const char *type = l == 1 ? "Root" : (i == 0 ? "Leaf" : "CA");
            const char *cells[] = {id,
                                   type,
                                   strncmp(state, "Available", 9) == 0 ? "Available" : state,
                                   valid ? "true" : "false",
                                   str_or(c, "serialNumber", ""),
                                   na,
                                   nb};
            int r = add_row(rows, cells, 7);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

int ctl_render(FILE *out, enum ctl_view view, enum ctl_output fmt, const json_t *dumps,
               long long now)
{
    json_t *items = collect(view, dumps);
    json_t *rows = NULL;
    size_t i;
    json_t *it;
    int r = 0;

    if (!items)
        return -ENOMEM;
    if (fmt == CTL_OUT_JSON) {
        r = json_dumpf(items, out, JSON_INDENT(2)) < 0 ? -EIO : 0;
        fputc('\n', out);
        goto out;
    }
    if (fmt == CTL_OUT_YAML) {
        r = dp_yaml_dump(items, out);
        goto out;
    }
    rows = json_array();
    switch (view) {
    case CTL_VIEW_WORKLOADS: {
        const char *hdr[] = {"NAMESPACE", "POD NAME", "ADDRESS", "NODE", "WAYPOINT", "PROTOCOL"};
        add_row(rows, hdr, 6);
        json_array_foreach(items, i, it)
        {
            char wp[256];
            json_t *ips = json_object_get(it, "workloadIps");
            if (!ips)
                ips = json_object_get(it, "addresses");
            char *addr = join_ips(ips);
            const char *cells[] = {str_or(it, "namespace", ""), str_or(it, "name", ""),
                                   addr && *addr ? addr : str_or(it, "hostname", "None"),
                                   str_or(it, "node", "None"), waypoint_name(it, wp, sizeof(wp)),
                                   str_or(it, "protocol", "TCP")};
            r = add_row(rows, cells, 6);
            free(addr);
            if (r < 0)
                goto out;
        }
        break;
    }
    case CTL_VIEW_SERVICES: {
        const char *hdr[] = {"NAMESPACE", "SERVICE NAME", "SERVICE VIP", "WAYPOINT", "ENDPOINTS"};
        add_row(rows, hdr, 5);
        json_array_foreach(items, i, it)
        {
            char wp[256], eps[64];
            char *vips = join_ips(json_object_get(it, "vips"));
            json_t *ep = json_object_get(it, "endpoints");
            size_t total = json_is_object(ep) ? json_object_size(ep) : json_array_size(ep);
            json_t *healthy = json_object_get(it, "healthyEndpoints");
            snprintf(eps, sizeof(eps), "%lld/%zu",
                     json_is_integer(healthy) ? json_integer_value(healthy) : (long long)total,
                     total);
            const char *cells[] = {str_or(it, "namespace", ""), str_or(it, "name", ""),
                                   vips && *vips ? vips : "None", waypoint_name(it, wp, sizeof(wp)),
                                   eps};
            r = add_row(rows, cells, 5);
            free(vips);
            if (r < 0)
                goto out;
        }
        break;
    }
    case CTL_VIEW_POLICIES: {
        const char *hdr[] = {"NAMESPACE", "POLICY NAME", "ACTION", "SCOPE"};
        add_row(rows, hdr, 4);
        json_array_foreach(items, i, it)
        {
            const char *cells[] = {str_or(it, "namespace", ""), str_or(it, "name", ""),
                                   str_or(it, "action", "Allow"), str_or(it, "scope", "")};
            if ((r = add_row(rows, cells, 4)) < 0)
                goto out;
        }
        break;
    }
    case CTL_VIEW_CERTIFICATES: {
        const char *hdr[] = {"CERTIFICATE NAME", "TYPE",     "STATUS",    "VALID CERT",
                             "SERIAL NUMBER",    "NOT AFTER", "NOT BEFORE"};
        add_row(rows, hdr, 7);
        json_array_foreach(items, i, it)
        {
            if ((r = cert_rows(rows, it, now)) < 0)
                goto out;
        }
        break;
    }
    }
    if (view != CTL_VIEW_CERTIFICATES)
        sort_rows(rows);
    r = ctl_table_print(out, rows);
out:
    json_decref(rows);
    json_decref(items);
    return r;
}

int ctl_table_print(FILE *out, const json_t *rows)
{
    size_t ncol = json_array_size(json_array_get(rows, 0));
    size_t *w = calloc(ncol ? ncol : 1, sizeof(*w));
    size_t i, c;
    json_t *row;
    if (!w)
        return -ENOMEM;
    json_array_foreach(rows, i, row)
    {
        for (c = 0; c < ncol; c++) {
            size_t l = strlen(json_string_value(json_array_get(row, c)) ?: "");
            if (l > w[c])
                w[c] = l;
        }
    }
    json_array_foreach(rows, i, row)
    {
        for (c = 0; c < ncol; c++) {
            const char *s = json_string_value(json_array_get(row, c)) ?: "";
            if (c + 1 < ncol)
                fprintf(out, "%-*s   ", (int)w[c], s);
            else
                fprintf(out, "%s\n", s);
        }
    }
    free(w);
    return ferror(out) ? -EIO : 0;
}
