"""Where an amphora agent's memory goes, and what one more amphora costs inside an amphora host.

    uv run python bench/agent_memory.py [--servers 200]

1. Private memory (``Private_Dirty`` of ``/proc/self/smaps_rollup``: what each agent process pays for itself;
   shared library text is shared) after each import an agent makes, in order, and its threads.
2. The same process then starts ``--servers`` mutual-TLS ``grpc.aio`` servers, each with its own certificate
   and health servicer, as an amphora host does per amphora: the cost of one more, against the first row.

HAProxy's own share is measured by ``bench/scale_bench.py`` (per process kind) on a real mesh.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def private_kib() -> int:
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1])
    return 0


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def imports() -> int:
    steps: list[tuple[str, str]] = [
        ("interpreter", ""),
        ("asyncio (and ssl)", "import asyncio"),
        ("grpc", "import grpc, grpc.aio"),
        ("grpc_health", "from grpc_health.v1 import health"),
        (
            "protos (agent, health)",
            "from octavia_mesh.protos.agent.v1 import agent_pb2_grpc\n"
            "from octavia_mesh.protos.health.v1 import health_pb2_grpc",
        ),  # fmt: skip
        ("agent modules", "from octavia_mesh.amphora_agent import server, heartbeat"),
    ]
    first = previous = private_kib()
    for name, code in steps:
        exec(code, {})  # noqa: S102 - fixed import lines, in order
        now = private_kib()
        print(f"  {name:<26} private {now / 1024:6.1f} MiB  (+{(now - previous) / 1024:5.1f})  threads {threads()}")
        previous = now
    print(f"  cryptography imported: {'cryptography' in sys.modules}; modules loaded: {len(sys.modules)}")
    return previous - first


async def servers(count: int, pki: object) -> float:
    import asyncio

    import grpc
    from grpc_health.v1 import health, health_pb2_grpc

    before = private_kib()
    running = []
    for _ in range(count):
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)  # pyright: ignore
        credentials = grpc.ssl_server_credentials(
            [(pki.agent.key, pki.agent.cert)],  # type: ignore[attr-defined]
            root_certificates=pki.ca_cert,  # type: ignore[attr-defined]
            require_client_auth=True,
        )
        server.add_secure_port("127.0.0.1:0", credentials)
        await server.start()
        running.append(server)
    await asyncio.sleep(0.5)
    per = (private_kib() - before) / count
    print(f"  {count} servers: +{(private_kib() - before) / 1024:.1f} MiB, {per:.1f} KiB each; threads {threads()}")
    for server in running:
        await server.stop(0)
    return per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=200)
    args = parser.parse_args()
    print("An agent's imports (private memory of this process):")
    agent = imports()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "amphora"))
    import asyncio  # after the measured imports: the interpreter row must not hold it

    from amphora_testkit import make_pki

    print("One more amphora in an amphora host (a mutual-TLS gRPC server each):")
    per = asyncio.run(servers(args.servers, make_pki()))
    print(f"Ratio: an agent's imports alone cost {agent / per:.0f}x one more gRPC server in a host")


if __name__ == "__main__":
    main()
