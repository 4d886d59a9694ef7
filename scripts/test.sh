#!/usr/bin/env bash
# Every check CI runs: generated code up to date, lint, types (pyright), the set-up the tests need (keepalived and,
# from the start and in the background, the virtualenvs of the tools some tests run),
# then the test suite on SQLite (the embedded default) and, at the same time, the API and every service's database
# layer again on PostgreSQL and MariaDB. Those two run when their servers answer on 127.0.0.1; set OCTAVIA_MESH_REQUIRE_ALL_DBS=1
# (as .ci/run does) to fail instead of skipping when one does not.
#
# The SQLite run is spread over OCTAVIA_MESH_TEST_WORKERS pytest-xdist workers (default 4: the tests mostly wait
# on processes, timers and the network). tests/grouping.py keeps every module, and every module sharing a session
# mesh, on one worker, and stops a group's meshes when its last test ends. Everything else runs beside it: the
# static checks, the database runs (one process each) and the Kubernetes checks; their output follows. Measured on
# a quiet 2-core machine, clean clones: 516 s with 3 workers and the static checks first, 504 s with 4 workers and
# them beside, 481 s once groups stopped their meshes, 456 s with migrations run inside the starting process and
# an idle worker pulling once a second (the run is CPU-bound: 885, then 772 CPU-seconds in all).
set -euo pipefail
cd "$(dirname "$0")/.."
UV="${PYTHON:-python3} -m uv"
WORKERS="${OCTAVIA_MESH_TEST_WORKERS:-4}"
logs="$(mktemp -d)"
pids=()
names=()
# A run may be a subshell (timed) around its command: stop the command too.
trap 'for pid in "${pids[@]}"; do pkill -P "$pid" 2>/dev/null; kill "$pid" 2>/dev/null || true; done; rm -rf "$logs"' EXIT

# Each run's wall time, for the log: the runs overlap, so the slowest one is what make test waits for.
timed() {  # name command...
  local start=$SECONDS status=0
  "${@:2}" || status=$?
  echo "== $1 took $((SECONDS - start)) s"
  return "$status"
}

# The virtualenvs of the tools some tests run (Keystone + Barbican, ansible) and Keystone's bootstrapped state:
# minutes of downloads and installs on a fresh machine, built now, beside the checks below, instead of inside
# the set-up of whichever test needs them first (tests/tool_venvs.py; such a test waits for the build's lock).
echo "== tool virtualenvs: building (their output follows the SQLite run's)"
$UV run python tests/tool_venvs.py >"$logs/tool-virtualenvs.log" 2>&1 &
pids+=("$!")
names+=("tool-virtualenvs")

# Byte code for every installed package and for our own sources, written once now: where PYTHONDONTWRITEBYTECODE
# is set (it is on the machine these figures come from) Python never writes it, so every process the tests start
# (each mesh service, each client CLI) compiled all it imports again: `import openstackclient.shell, openstack`
# took 3.8 CPU-seconds instead of 1.4. Compiling costs ~10 CPU-seconds once.
echo "== byte code"
$UV sync --frozen --quiet --compile-bytecode
$UV run python -m compileall -q -j 0 amphora cli common protos sdk services

# The static checks (generated code up to date, buf lint, ruff, pyright: ~40 CPU-seconds, pyright most of it) run
# beside the tests, a notch below them in priority; their output follows the SQLite run's.
static_checks() {
  local run="nice -n 5 $UV run"
  echo "== generated protos" && $run python scripts/gen_protos.py --check &&
    echo "== buf lint" && $run python scripts/lint_protos.py &&
    echo "== ruff" && $run ruff check . && $run ruff format --check . &&
    echo "== pyright" && $run pyright
}
echo "== static checks: started (their output follows the SQLite run's)"
timed "static checks" static_checks >"$logs/static-checks.log" 2>&1 &
pids+=("$!")
names+=("static-checks")

echo "== set-up"
# keepalived runs the ACTIVE_STANDBY amphorae's VRRP; those tests need root (network namespaces) and skip without.
if PATH="$PATH:/usr/sbin:/sbin" command -v keepalived >/dev/null; then
  echo "keepalived: $(PATH="$PATH:/usr/sbin:/sbin" command -v keepalived)"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "keepalived: installing it from the distribution's packages"
  export DEBIAN_FRONTEND=noninteractive
  install=(apt-get install -y --no-install-recommends keepalived)
  "${install[@]}" >/dev/null 2>&1 || { apt-get update >/dev/null && "${install[@]}" >/dev/null; }
else
  echo "keepalived: missing, and not root: the ACTIVE_STANDBY tests skip (they need root anyway)"
fi

# The API and every service's own database layer (health writes, failover claims, housekeeping purges).
DB_TESTS=(tests/api tests/db tests/health/test_health_store.py tests/health/test_failover_detector.py
  tests/housekeeping/test_purge.py tests/housekeeping/test_queueing.py)
# Each run's own short temporary root: xdist adds popen-gwN/ to the paths, and amphora agents put unix sockets
# (at most 107 bytes) below a test's directory.
temps=()
short_temp() { temps+=("$(mktemp -d /tmp/omt-XXXXXX)"); }

start_db_run() {  # name url host port
  if $UV run python -c "import socket,sys; socket.create_connection(('$3', $4), 2)" 2>/dev/null; then
    echo "== database tests on $1: started (their output follows the SQLite run's)"
    short_temp
    # The API's tests run there on the fast tier (tests/fastedge.py): API and worker processes, no Envoy.
    timed "$1" env OCTAVIA_MESH_TEST_DATABASE_URL="$2" $UV run pytest -p no:cacheprovider --basetemp="${temps[-1]}" \
      -m "not sqlite_only" "${DB_TESTS[@]}" >"$logs/$1.log" 2>&1 &
    pids+=("$!")
    names+=("$1")
  elif [ "${OCTAVIA_MESH_REQUIRE_ALL_DBS:-0}" = 1 ]; then
    echo "$1 is not reachable on $3:$4, and OCTAVIA_MESH_REQUIRE_ALL_DBS=1" >&2
    exit 1
  else
    echo "== $1 not reachable on $3:$4: skipping its run (SQLite covers everything)"
  fi
}
start_db_run PostgreSQL "postgresql://postgres@127.0.0.1:5432/postgres" 127.0.0.1 5432
start_db_run MariaDB "mysql://root@127.0.0.1:3306/mysql" 127.0.0.1 3306
# The Kubernetes deployment (render, schema, checkov, hadolint): mostly checkov's CPU, so it runs beside the tests
# at the lowest priority (at normal priority it starved the tests' own timing bounds).
echo "== kubernetes manifests: started (their output follows the SQLite run's)"
timed kubernetes nice -n 19 scripts/check_k8s.sh >"$logs/kubernetes.log" 2>&1 &
pids+=("$!")
names+=("kubernetes")

echo "== tests on SQLite ($WORKERS workers)"
status=0
short_temp
timed "tests on SQLite" $UV run pytest -n "$WORKERS" --dist loadgroup --basetemp="${temps[-1]}" || status=$?

for i in "${!pids[@]}"; do
  result=0
  wait "${pids[$i]}" || result=$?
  echo "== ${names[$i]}"
  cat "$logs/${names[$i]}.log"
  if [ "$result" != 0 ]; then
    echo "== ${names[$i]} failed (exit $result)"
    status=$result
  fi
done
pids=()
rm -rf "$logs"
echo "== all checks and tests took $SECONDS s"
if [ "$status" = 0 ]; then rm -rf "${temps[@]}"; else echo "== the runs' temporary files (mesh logs): ${temps[*]}"; fi
exit "$status"
