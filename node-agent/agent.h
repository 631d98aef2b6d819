/*
 * agent.h — the node agent's context: options, worker loops, adopted pods, the current mesh
 * snapshot, identities, telemetry and the local servers (cni.sock, metrics, readiness, admin).
 *
 * Threading: the agent object is created and torn down on the main thread (worker 0). Pods are
 * pinned to a worker; their listeners and connections never leave it. Shared, read-mostly state
 * (mesh snapshot, identity store, metrics) is guarded as documented at each member.
 */
#ifndef NA_AGENT_H
#define NA_AGENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common.h"
#include "loop.h"

struct na_worker;
struct na_pod;
struct na_identity;
struct na_telemetry;
struct na_enrol;

#define NA_MARK            0x539u
#define NA_PORT_OUTBOUND   15001
#define NA_PORT_INBOUND    15006
#define NA_PORT_HBONE      15008
#define NA_PORT_ADMIN      15000
#define NA_PORT_METRICS    15020
#define NA_PORT_READY      15021

struct na_options {
    const char *node_name;   /* NODE_NAME / --node */
    const char *config_path; /* mesh objects + pods, JSON or YAML (optional) */
    const char *run_dir;     /* /var/run/ambit: cni.sock lives here */
    unsigned workers;        /* default: online cores */
    unsigned drain_ms;       /* SIGTERM drain deadline */
    const char *metrics_addr; /* "0.0.0.0:15020" */
    const char *ready_addr;   /* "0.0.0.0:15021" */
    const char *admin_addr;   /* "127.0.0.1:15000" */
    const char *ca_cert;      /* file CA (test/dev identity provider) */
    const char *ca_key;
    unsigned cert_ttl_s;
    uint32_t mark;
    uint16_t port_outbound, port_inbound, port_hbone;
    unsigned connect_timeout_ms;
    const char *operator_url;   /* AMBIT_OPERATOR: config stream + certificates (opclient.h) */
    const char *operator_token; /* AMBIT_OPERATOR_TOKEN: bearer token file */
    const char *operator_ca;    /* AMBIT_OPERATOR_CA: root verifying the operator */
    const char *kubeconfig; /* --kubeconfig: turns the enrolment loop on (enrol.h) */
};

/** Fill defaults (ports, mark, run dir, cores, drain 30 s) then apply the environment
 *  (NODE_NAME, AMBIT_CONFIG, AMBIT_RUN_DIR, AMBIT_WORKERS, AMBIT_DRAIN_MS, AMBIT_CA_CERT,
 *  AMBIT_CA_KEY). Flags parsed later override both. */
void na_options_defaults(struct na_options *o);

struct na_agent {
    struct na_options opt;
    unsigned nworkers;
    struct na_worker *workers;

    pthread_mutex_t pods_mu;  /* guards the pods list (membership); pod internals are per worker */
    struct dp_list pods;
    unsigned next_worker;

    pthread_rwlock_t mesh_mu; /* guards `mesh` pointer swaps; readers take a reference */
    void *mesh;               /* current mesh snapshot (mesh.h), refcounted */

    struct na_identity *identity;
    struct na_opclient *opclient; /* NULL without --operator */
    struct na_telemetry *tel;
    struct na_enrol *enrol;   /* NULL without API access (enrol.h) */

    void *cni_server;         /* httpd on cni.sock */
    void *metrics_server, *ready_server, *admin_server;

    atomic_bool draining;
    atomic_bool ready;
};

int na_agent_new(const struct na_options *opt, struct na_agent **ret_agent);
/** Start workers and servers, adopt pods declared in the config file. 0 or -errno. */
int na_agent_start(struct na_agent *a);
/** Run worker 0's loop on the calling thread until the agent stops (after drain). */
int na_agent_run(struct na_agent *a);
void na_agent_free(struct na_agent *a);

/** Worker that owns new work for the calling thread (worker 0 when called off-worker). */
struct na_worker *na_agent_pick_worker(struct na_agent *a);

#endif
