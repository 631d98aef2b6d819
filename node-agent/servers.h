/*
 * servers.h — the node agent's local HTTP endpoints, all on worker 0's loop:
 *   <run_dir>/cni.sock  POST /v1/pods, DELETE /v1/pods/<uid>       (PROTOCOLS.md §3)
 *   15020               /metrics, /stats/prometheus
 *   15021               /healthz/ready (200 once started, 503 while draining)
 *   127.0.0.1:15000     /config_dump (workloads, services, policies, certificates — no keys)
 */
#ifndef NA_SERVERS_H
#define NA_SERVERS_H

struct na_agent;

int na_servers_start(struct na_agent *a);
/** Stop accepting adopt requests (drain). */
void na_servers_stop_cni(struct na_agent *a);
void na_servers_free(struct na_agent *a);

#endif
