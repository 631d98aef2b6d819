/*
 * ctl.h — ambitctl internals shared by its commands and tests.
 *
 * Rendering is separate from fetching: every `ztunnel-config` view is a pure function from a
 * node agent's /config_dump JSON to rows, so tests feed fixtures and no cluster is needed.
 */
#ifndef CTL_H
#define CTL_H

#include <stdio.h>

#include <jansson.h>

enum ctl_output { CTL_OUT_TABLE, CTL_OUT_JSON, CTL_OUT_YAML };

/** "table" | "json" | "yaml" -> enum; -EINVAL otherwise. */
int ctl_output_parse(const char *s, enum ctl_output *ret);

enum ctl_view { CTL_VIEW_WORKLOADS, CTL_VIEW_SERVICES, CTL_VIEW_POLICIES, CTL_VIEW_CERTIFICATES };

/** "workloads"/"workload"/"wl" ... -> enum; -EINVAL otherwise. */
int ctl_view_parse(const char *s, enum ctl_view *ret);

/**
 * Render one view of one or more config dumps (a JSON array of dumps, one per node agent; the
 * rows are merged and de-duplicated by key, sorted by namespace then name) as a table with
 * Istio's columns, or the selected items as JSON/YAML. `now` (unix seconds) decides certificate
 * validity. Returns 0 or -errno.
 */
int ctl_render(FILE *out, enum ctl_view view, enum ctl_output fmt, const json_t *dumps,
               long long now);

/** Print rows as a column-aligned table (3 spaces between columns, like kubectl). `rows` is an
 *  array of arrays of strings; the first row is the header. */
int ctl_table_print(FILE *out, const json_t *rows);

/* ambitctl analyze (ctl/analyze.c) */
/** Run the analyzer (dataplane/analyze.h) over objects (an array of Kubernetes objects;
 *  `kind: List` expanded; later ones replace earlier ones with the same kind/namespace/name;
 *  objects without a namespace get default_ns). 0 + NEW findings array, or -errno. */
int ctl_analyze(const json_t *objects, const char *default_ns, const char *root_ns,
                json_t **ret_findings);
/** Print findings: istioctl's `Level [CODE] (Kind ns/name) message` lines (table) or the
 *  findings as JSON/YAML. Returns the number of Error findings, or -errno. */
int ctl_analyze_print(FILE *out, const json_t *findings, enum ctl_output fmt);
struct dp_kube_client;
/** Append every object the analyzer reads from the cluster (ns NULL = all namespaces) to
 *  objects; kinds whose CRD is missing are skipped. 0 or -errno (errbuf says which). */
int ctl_analyze_fetch(struct dp_kube_client *c, const char *ns, json_t *objects, char *errbuf,
                      size_t errsz);

/* ambitctl x ca root|intermediate — Istio's tools/certs layout (see ctl/ca_tool.c). */
int ctl_ca_root(const char *dir, int days, int bits, char *errbuf, size_t errsz);
int ctl_ca_intermediate(const char *root_dir, const char *out_dir, const char *cluster, int days,
                        int bits, char *errbuf, size_t errsz);

#endif
