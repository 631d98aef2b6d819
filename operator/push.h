/*
 * push.h — what the config stream (server.h, GET /v1/config) sends to each node agent, built so
 * that 100 agents cost little more than one:
 *
 *   - every object is serialised once per version of it: a text cache keyed by kind/key that
 *     remembers which (immutable, shared) snapshot object the text belongs to;
 *   - a batch of events is serialised once into reference-counted chunks that every stream
 *     queues (no copy per agent until the bytes are handed to the connection);
 *   - the full snapshot (first connect, reset) is assembled once per snapshot version and shared
 *     the same way;
 *   - policies are scoped per node: an agent receives the Global policies, the Namespace
 *     policies of namespaces with a workload on its node, and the WorkloadSelector policies
 *     listed in the `authorizationPolicies` of a workload on its node. When a workload moves in
 *     or out of the node (or its policy list changes) the stream gets the upserts of policies
 *     entering its scope and deletes for those leaving it. Policy deletes go to every agent.
 *     Workloads, services and waypoints go to every agent (outbound lookups need them all).
 *
 * Stream order for a batch: waypoint and service upserts, policy upserts, workload upserts,
 * workload deletes, policy deletes, service and waypoint deletes, `synced`. A full push: the
 * same without deletes. Events added for a scope change carry the batch's last version.
 *
 * Single-threaded (the operator's loop). The server moves queued bytes into its connections.
 */
#ifndef OP_PUSH_H
#define OP_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>


struct op_push;
struct op_push_stream;

/** New push state. 0 or -ENOMEM. Every call below passes the operator's current snapshot
 *  (op_snapshot(), borrowed) and its version (op_version()). */
int op_push_new(struct op_push **ret_p);
/** Free (every stream must have been closed). Accepts NULL. */
void op_push_free(struct op_push *p);

/**
 * A new stream for agent `node`: queues the events of since_events (op_events_since() of the
 * agent's `since`), scoped, plus upserts of the policies in its scope; or, with since_events
 * NULL, a full push (preceded by `reset` if `reset`); then `synced`. *ret_events: events
 * queued. 0 or -ENOMEM.
 */
int op_push_stream_open(struct op_push *p, const json_t *snap, uint64_t version,
                        const json_t *since_events, bool reset, const char *node,
                        struct op_push_stream **ret_ps, size_t *ret_events);
/** Drop the stream and its queue. Accepts NULL. */
void op_push_stream_close(struct op_push_stream *ps);

/** Queue a published batch (op_push_cb's events) on every open stream. 0 or -ENOMEM (then
 *  the streams are in an unknown state: the caller drops them, agents resume). */
int op_push_publish(struct op_push *p, const json_t *snap, uint64_t version,
                    const json_t *events);

/** Bytes queued and not yet taken. */
size_t op_push_queued(const struct op_push_stream *ps);
/** The next queued bytes (contiguous; NULL when empty). Borrowed until op_push_advance. */
const char *op_push_peek(const struct op_push_stream *ps, size_t *ret_len);
/** Mark n bytes (at most what op_push_peek returned) as taken. */
void op_push_advance(struct op_push_stream *ps, size_t n);

/** The node's policy keys in scope right now (NEW object key -> true), for tests. */
json_t *op_push_scope(struct op_push *p, const json_t *snap, const char *node);

#endif
