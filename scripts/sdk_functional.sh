#!/usr/bin/env bash
# openstacksdk's own functional tests for load balancing (openstack/tests/functional/load_balancer, 58 tests, from
# the openstacksdk version uv.lock pins, which ships them) against a mesh in keystone mode. Run by
# scripts/conformance.sh after tempest, with its Keystone and mesh:
#
#   scripts/sdk_functional.sh MESH_URL KEYSTONE_V3_URL [pytest options, e.g. -k test_lb_get]
#
# The tests build a whole tree per test on the amphora provider (their flavor profile names it): real amphorae on
# this machine, VIPs on the local VIP subnet, which is the first subnet the mesh's Neutron lookups list.
# Their dependencies (testtools, oslotest, fixtures) live in .cache/sdk-functional-venv, created on first use.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MESH_URL="$1"; KS_URL="$2"; shift 2
SDK_VERSION="$("$ROOT/.venv/bin/python" -c 'import importlib.metadata as m; print(m.version("openstacksdk"))')"
VENV="$ROOT/.cache/sdk-functional-venv"
MARK="$VENV/.installed-openstacksdk-$SDK_VERSION"
if [ ! -f "$MARK" ]; then
  UV=(python3 -m uv); command -v uv >/dev/null && UV=(uv)
  "${UV[@]}" venv -q --clear -p 3.11 "$VENV"
  "${UV[@]}" pip install -q --python "$VENV/bin/python" "openstacksdk==$SDK_VERSION" oslotest testtools fixtures \
    requests-mock pytest
  touch "$MARK"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# Every cloud the tests name is Keystone's admin in project admin (the tests use operator and user clouds alike).
{
  echo "clouds:"
  for cloud in devstack devstack-alt devstack-admin devstack-system-admin; do
    cat <<EOF
  $cloud:
    auth:
      auth_url: $KS_URL
      username: admin
      password: ${KS_ADMIN_PASSWORD:-anchor-admin}
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
    load_balancer_endpoint_override: $MESH_URL
    network_endpoint_override: $MESH_URL
EOF
  done
} >"$WORK/clouds.yaml"
SDK_DIR="$("$VENV/bin/python" -c 'import openstack, os; print(os.path.dirname(openstack.__file__))')"
cd "$WORK"
printf '[pytest]\n' >"$WORK/pytest.ini"  # not the project's pytest settings
OS_CLIENT_CONFIG_FILE="$WORK/clouds.yaml" OS_CLOUD=devstack-admin \
  OS_TEST_TIMEOUT="${OS_TEST_TIMEOUT:-900}" OPENSTACKSDK_FUNC_TEST_TIMEOUT_LOAD_BALANCER="${OPENSTACKSDK_FUNC_TEST_TIMEOUT_LOAD_BALANCER:-120}" \
  "$VENV/bin/python" -m pytest -c "$WORK/pytest.ini" -q -p no:cacheprovider "$SDK_DIR/tests/functional/load_balancer" "$@"
