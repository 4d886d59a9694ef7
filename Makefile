# Octavia Mesh: `make up` runs the whole mesh on embedded defaults; `make test` runs every check CI runs.
# Both install what they need (uv, then the locked workspace) on a fresh machine with Python 3.11+.

PYTHON ?= python3
UV := $(PYTHON) -m uv
PORT ?= 9876
STATE ?= state

.PHONY: up test sync bootstrap protos lint typecheck bench conformance

bootstrap:
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv

sync: bootstrap
	@$(UV) sync --frozen --quiet

up: sync
	$(UV) run octavia-mesh up --port $(PORT) --state-dir $(STATE)

test: sync
	./scripts/test.sh

protos: sync
	$(UV) run python scripts/gen_protos.py

lint: sync
	$(UV) run ruff check . && $(UV) run ruff format --check . && $(UV) run python scripts/lint_protos.py

# pyright, standard mode, on every package's src/ ([tool.pyright] in pyproject.toml); `make test` runs it too.
typecheck: sync
	$(UV) run pyright

bench: sync
	$(UV) run python bench/api_bench.py
	$(UV) run python bench/dataplane_bench.py
	$(UV) run python bench/health_bench.py
	$(UV) run python bench/failover_bench.py
	$(UV) run python bench/auth_bench.py
	$(UV) run python bench/create_bench.py
	@if [ "$$(id -u)" = 0 ]; then $(UV) run python bench/active_standby_bench.py; \
	else echo "bench/active_standby_bench.py needs root (network namespaces): skipped"; fi

# Octavia's conformance suite (octavia-tempest-plugin's 632 API tests, ~35 minutes, with a real Keystone) and
# openstacksdk's load-balancer functional tests against a mesh in keystone mode; not part of `make test`.
TEMPEST_DIR ?= ../shared/tools/tempest
conformance: sync
	TEMPEST_DIR=$(TEMPEST_DIR) ./scripts/conformance.sh
