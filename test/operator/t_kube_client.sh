#!/usr/bin/env bash
# dataplane/kube against a real API server: CRUD, pagination, selectors, merge patch, conflict,
# server-side apply, status subresource (Mesh CRD), TokenReview, informer events.
set -u
cd "$(dirname "$0")/../.."
. test/lib/testlib.sh
. test/operator/lib.sh
BUILD=${BUILD:-build}
t_begin operator-kube-client
op_api_up || { t_fail "API server available"; t_end; exit 1; }
trap 'op_crds_cleanup; op_cleanup' EXIT
op_crds_install >/dev/null 2>&1
# the cmocka binary prints its own summary lines, which run-tests.sh counts
AMBIT_TEST_KUBECONFIG=$KUBECONFIG "$BUILD/tests/dataplane-test_kube_live"
