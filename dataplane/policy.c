/*
 * policy.c - SKELETON: every function is a placeholder (int functions return -ENOSYS, pointer
 * functions NULL, predicates false) until the implementation lands later this session.
 */
#include <errno.h>

#include "policy.h"

bool dp_policy_match_matches(const struct dp_mesh_match *m, const struct dp_policy_conn *c)
{
    (void)m;
    (void)c;
    return false;
}

bool dp_policy_matches(const struct dp_mesh_policy *p, const struct dp_policy_conn *c)
{
    (void)p;
    (void)c;
    return false;
}

int dp_policy_evaluate(const struct dp_mesh_policy *const *policies, size_t n, const struct dp_policy_conn *c, struct dp_policy_result *ret_result)
{
    (void)policies;
    (void)n;
    (void)c;
    (void)ret_result;
    return -ENOSYS;
}

int dp_policy_check(const struct dp_mesh_snapshot *s, const struct dp_mesh_workload *dst, const struct dp_policy_conn *c, struct dp_policy_result *ret_result)
{
    (void)s;
    (void)dst;
    (void)c;
    (void)ret_result;
    return -ENOSYS;
}

int dp_policy_compile_authz(const json_t *cr, const char *root_ns, json_t **ret_policies, struct dp_policy_diags *diags)
{
    (void)cr;
    (void)root_ns;
    (void)ret_policies;
    (void)diags;
    return -ENOSYS;
}

bool dp_policy_cr_selects(const json_t *cr, const char *root_ns, const char *ns, const json_t *labels)
{
    (void)cr;
    (void)root_ns;
    (void)ns;
    (void)labels;
    return false;
}

int dp_policy_compile_peerauthn(const json_t *pas, const char *root_ns, json_t **ret_policies, struct dp_policy_diags *diags)
{
    (void)pas;
    (void)root_ns;
    (void)ret_policies;
    (void)diags;
    return -ENOSYS;
}

int dp_policy_peerauthn_keys(const json_t *pas, const char *root_ns, const char *ns, const json_t *labels, json_t **ret_keys, struct dp_policy_diags *diags)
{
    (void)pas;
    (void)root_ns;
    (void)ns;
    (void)labels;
    (void)ret_keys;
    (void)diags;
    return -ENOSYS;
}
