"""The PROMETHEUS listener's exporter: HAProxy's metrics under Octavia's names, as Octavia's amphora serves them.

Octavia's amphora renders a PROMETHEUS listener as a frontend whose backend is a small proxy
(``prometheus_proxy``) that reads HAProxy's native exporter and renames its series (``haproxy_frontend_*`` ->
``octavia_listener_*``...: :mod:`.promnames`), so that its Grafana dashboards work with any provider. The agent
does the same, on unix sockets so that any number of amphorae share one machine:

* the agent's configuration fragment of a load balancer whose configuration uses the
  ``prometheus-exporter-internal`` backend (the controller renders a PROMETHEUS listener so) adds HAProxy's
  native exporter on ``<run>/<key>.prom`` and that backend, which sends the request to this proxy at
  ``<run>/prometheus.sock`` with the path ``/lb/<load balancer id>/metrics``;
* the proxy (one per agent, on its event loop) reads that load balancer's exporter, keeps the series Octavia publishes,
  renames them and their labels, and adds ``octavia_loadbalancer_cpu`` and ``octavia_loadbalancer_memory``.

HAProxy's HTTP parsing stands in front (the listener's frontend: ``allowed_cidrs``, TLS, timeouts), so the proxy
is only ever called by HAProxy, over a socket only the agent's user can open.
"""

from __future__ import annotations

import asyncio
import http.client
import logging
import os
import re
import socket
from http import HTTPStatus
from pathlib import Path

from octavia_mesh.amphora_agent.promnames import LABELS, NAMES
from octavia_mesh.amphora_agent.store import InvalidName, check_id, remove, socket_key

logger = logging.getLogger(__name__)

#: The backend the controller's PROMETHEUS frontends use (Octavia's name): a contract with the worker's templates.
BACKEND = "prometheus-exporter-internal"
#: Series of the internal exporter frontend and backend are not the user's (Octavia leaves them out too).
_INTERNAL = "prometheus-exporter"
#: How long one read of HAProxy's exporter may take.
SCRAPE_TIMEOUT_S = 5.0
_PATH = re.compile(r"/lb/([^/]+)/metrics")
_LABEL = re.compile(r'(?<=[{,])([a-zA-Z_][a-zA-Z0-9_]*)=(?=")')


def exporter_socket(run_dir: Path, lb_id: str) -> Path:
    """Where a load balancer's HAProxy serves its native exporter."""
    return run_dir / f"{socket_key(lb_id)}.prom"


def proxy_socket(run_dir: Path) -> Path:
    """Where the agent's proxy listens."""
    return run_dir / "prometheus.sock"


def fragment(run_dir: Path, lb_id: str) -> str:
    """The agent's configuration sections for a load balancer with a PROMETHEUS listener (Octavia's, on sockets).

    They come before the controller's ``defaults``, so they name their own timeouts.
    """
    return (
        "\n"
        "# HAProxy's own exporter, read by the agent's proxy, which renames its series to Octavia's.\n"
        f"frontend {_INTERNAL}-internal-endpoint\n"
        f"    bind unix@{exporter_socket(run_dir, lb_id)} mode 600\n"
        "    mode http\n"
        "    no log\n"
        "    timeout client 5s\n"
        "    timeout http-request 5s\n"
        "    http-request use-service prometheus-exporter if { path /metrics }\n"
        "    http-request reject\n"
        "\n"
        f"backend {BACKEND}\n"
        "    mode http\n"
        "    no log\n"
        "    timeout connect 5s\n"
        "    timeout server 5s\n"
        f"    http-request set-path /lb/{lb_id}/metrics\n"
        f"    server prometheus-internal unix@{proxy_socket(run_dir)}\n"
    )


def _rename_labels(line: str, renames: dict[str, str]) -> str:
    if not renames or "{" not in line:
        return line
    head, brace, rest = line.partition("{")
    labels, close, tail = rest.rpartition("}")
    labels = _LABEL.sub(lambda m: f"{renames.get(m.group(1), m.group(1))}=", "{" + labels)[1:]
    return f"{head}{brace}{labels}{close}{tail}"


def translate(native: str) -> str:
    """HAProxy's exposition text -> Octavia's: known series renamed (labels too), the others dropped."""
    out: list[str] = []
    for line in native.splitlines():
        if _INTERNAL in line:
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE") or parts[2] not in NAMES:
                continue
            name, help_text = NAMES[parts[2]]
            if parts[1] == "HELP" and help_text is not None:
                out.append(f"# HELP {name} {help_text}")
            else:
                out.append(f"# {parts[1]} {name} {parts[3] if len(parts) > 3 else ''}".rstrip())
            continue
        end = min((i for i in (line.find("{"), line.find(" ")) if i >= 0), default=-1)
        native_name = line[:end] if end >= 0 else line
        if native_name not in NAMES:
            continue
        kind = native_name.split("_", 2)[1]
        out.append(NAMES[native_name][0] + _rename_labels(line[len(native_name) :], LABELS.get(kind, {})))
    return "\n".join(out) + "\n"


def _cpu_percent() -> float:
    """The one-minute load average per CPU, in percent (Octavia's ``octavia_loadbalancer_cpu``)."""
    return os.getloadavg()[0] / (os.cpu_count() or 1) * 100


def _memory_percent() -> float:
    """Memory in use, in percent of the total (Octavia's ``octavia_loadbalancer_memory``, psutil's ``percent``)."""
    info: dict[str, int] = {}
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            key, _, value = line.partition(":")
            info[key] = int(value.split()[0])
    total = info.get("MemTotal", 0)
    return (total - info.get("MemAvailable", total)) / total * 100 if total else 0.0


def machine_metrics() -> str:
    return (
        "# HELP octavia_loadbalancer_cpu Load balancer CPU utilization (percentage).\n"
        "# TYPE octavia_loadbalancer_cpu gauge\n"
        f"octavia_loadbalancer_cpu {_cpu_percent():.1f}\n"
        "# HELP octavia_loadbalancer_memory Load balancer memory utilization (percentage).\n"
        "# TYPE octavia_loadbalancer_memory gauge\n"
        f"octavia_loadbalancer_memory {_memory_percent():.1f}\n"
    )


class _UnixConnection(http.client.HTTPConnection):
    """An HTTP client connection to a unix socket."""

    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=SCRAPE_TIMEOUT_S)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except OSError:
            sock.close()
            raise
        self.sock = sock


def scrape(run_dir: Path, lb_id: str) -> str:
    """Read a load balancer's native exporter; raises OSError (or http.client's errors) when it cannot."""
    connection = _UnixConnection(exporter_socket(run_dir, lb_id))
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise OSError(f"HAProxy's exporter answered {response.status}")
        return body.decode("utf-8", errors="replace")
    finally:
        connection.close()


def answer(run_dir: Path, path: str) -> tuple[int, bytes]:
    """The status and body for a scrape of ``path`` (``/lb/<id>/metrics``): blocking, run in a thread."""
    match = _PATH.fullmatch(path)
    try:
        lb_id = check_id(match.group(1)) if match else None
    except InvalidName:
        lb_id = None
    if lb_id is None:
        return 404, b""
    try:
        return 200, (machine_metrics() + translate(scrape(run_dir, lb_id))).encode()
    except (OSError, http.client.HTTPException) as exc:
        logger.warning("lb %s: cannot read HAProxy's exporter: %s", lb_id, exc)
        return 502, b""


class PrometheusProxy:
    """The agent's proxy (see the module docstring): one HTTP/1.1 request per connection, answered and closed.

    Its only client is HAProxy, which sends the request line and headers of a GET; so the server is asyncio's
    own, reading the head and answering with a length, rather than a thread (which would hold up the agent's
    stop by its polling interval).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = proxy_socket(run_dir)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        remove(self.path)  # a killed agent's
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        remove(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SCRAPE_TIMEOUT_S)
            method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status, body = await asyncio.to_thread(answer, self.run_dir, path) if method == "GET" else (405, b"")
            content_type = "text/plain; version=0.0.4; charset=utf-8" if status == 200 else "text/plain"
            writer.write(
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # a broken or malformed request: nothing to answer
        finally:
            writer.close()
