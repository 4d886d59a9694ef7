#!/usr/bin/env bash
# Octavia's conformance suite against the mesh: octavia-tempest-plugin's API tests (632, ~35 minutes) with a
# real Keystone, the mesh in keystone mode with the noop provider (what upstream's noop API job tests), then
# openstacksdk's functional tests for load balancing (scripts/sdk_functional.sh). `make conformance`; not part
# of `make test`.
#
#   scripts/conformance.sh [run.sh options: --regex R, --concurrency N, --timeout S]
#
# Env: TEMPEST_DIR (../shared/tools/tempest: the harness, read only), TEMPEST_ANCHOR_WORK (.conformance/:
# its venvs, Keystone's state and the results, kept between runs), KS_PORT (15357), MESH_PORT (a free one).
# Real Octavia 19.0.0 passes 489, fails 0, skips 143 here; the last line is the mesh's "N passed, N failed,
# N skipped" (then the sdk tests' pytest summary), and the exit code is 0 iff nothing failed.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TEMPEST_DIR="${TEMPEST_DIR:-$ROOT/../shared/tools/tempest}"
[ -x "$TEMPEST_DIR/run.sh" ] || { echo "no tempest harness at $TEMPEST_DIR (set TEMPEST_DIR)" >&2; exit 2; }
TEMPEST_DIR="$(cd "$TEMPEST_DIR" && pwd)"
export TEMPEST_ANCHOR_WORK="${TEMPEST_ANCHOR_WORK:-$ROOT/.conformance}"
export KS_PORT="${KS_PORT:-15357}"
mkdir -p "$TEMPEST_ANCHOR_WORK"
PY="$ROOT/.venv/bin/python"
MESH_PORT="${MESH_PORT:-$("$PY" -c 'from octavia_mesh.cli.processes import free_port; print(free_port())')}"
STATE="$TEMPEST_ANCHOR_WORK/mesh"

# Keystone first: the mesh's service user must exist before the first token is validated.
KS_STARTED=0
"$TEMPEST_DIR/keystone.sh" status >/dev/null 2>&1 || KS_STARTED=1
"$TEMPEST_DIR/keystone.sh" start

MESH_PID=""
stop_mesh() {
  if [ -n "$MESH_PID" ] && kill -0 "$MESH_PID" 2>/dev/null; then
    kill -INT "$MESH_PID"
    for _ in $(seq 1 60); do kill -0 "$MESH_PID" 2>/dev/null || break; sleep 0.5; done
  fi
  MESH_PID=""
}
cleanup() {
  stop_mesh
  if [ "$KS_STARTED" = 1 ]; then "$TEMPEST_DIR/keystone.sh" stop || true; fi
}
trap cleanup EXIT

# The service user the harness creates in Keystone (README: octavia / octavia-anchor in project service).
export OCTAVIA_MESH_API_KEYSTONE_USERNAME=octavia
export OCTAVIA_MESH_API_KEYSTONE_PASSWORD="${OCTAVIA_SERVICE_PASSWORD:-octavia-anchor}"
export OCTAVIA_MESH_API_KEYSTONE_PROJECT_NAME=service
start_mesh() {  # start_mesh PROVIDER: a fresh mesh in keystone mode whose default provider is PROVIDER
  rm -rf "$STATE"; mkdir -p "$STATE"
  "$ROOT/.venv/bin/octavia-mesh" up --port "$MESH_PORT" --state-dir "$STATE" --provider "$1" \
    --auth-strategy keystone --keystone-url "http://127.0.0.1:$KS_PORT/v3" >"$STATE/up.log" 2>&1 &
  MESH_PID=$!
  for _ in $(seq 1 240); do
    grep -q 'Octavia Mesh is up' "$STATE/up.log" && break
    kill -0 "$MESH_PID" 2>/dev/null || { cat "$STATE/up.log" >&2; exit 1; }
    sleep 0.5
  done
  grep -q 'Octavia Mesh is up' "$STATE/up.log" || { echo "the mesh did not start" >&2; cat "$STATE/up.log" >&2; exit 1; }
  echo "mesh (keystone mode, $1 provider by default) on http://127.0.0.1:$MESH_PORT, state in $STATE"
}
start_mesh noop

# The providers exactly as GET /v2/lbaas/providers lists them (tempest checks the list).
PROVIDERS="$("$PY" - "$MESH_PORT" <<'EOF'
import sys
from octavia_mesh.api.settings import ApiSettings
print(",".join(f"{n}:{d}" for n, d in ApiSettings.from_env().providers.items()))
EOF
)"
export TEMPEST_LB_PROVIDER=noop TEMPEST_LB_PROVIDERS="$PROVIDERS"
set +e
"$TEMPEST_DIR/run.sh" "http://127.0.0.1:$MESH_PORT" "$@"
RC=$?
# Then openstacksdk's functional tests for load balancing, with the same Keystone (SDK_FUNCTIONAL=0: not).
SDK_RC=0
if [ "${SDK_FUNCTIONAL:-1}" = 1 ]; then
  # Their load balancers name no provider and their amphora tests need amphorae: the amphora provider.
  stop_mesh
  start_mesh amphora
  echo "openstacksdk functional tests (load_balancer) against http://127.0.0.1:$MESH_PORT"
  "$ROOT/scripts/sdk_functional.sh" "http://127.0.0.1:$MESH_PORT" "http://127.0.0.1:$KS_PORT/v3"
  SDK_RC=$?
fi
set -e
[ "$RC" = 0 ] && [ "$SDK_RC" = 0 ]
