"""``oban metrics``: serve the Prometheus text of an Oban's database until a signal.

The figures are read from the database at each scrape (see
:mod:`oban.observability.prometheus`), so this process needs no queues and
may run anywhere the database is reachable, one for the whole cluster.
"""

from __future__ import annotations

from collections.abc import Callable

from ..oban import Oban
from .serve import WAKE_EVERY, Signals
from .settings import CliError

__all__ = ["require_prometheus", "serve_metrics"]


def require_prometheus() -> None:
    """Fail with the install command, before anything else, without the extra."""
    try:
        import prometheus_client  # noqa: F401  # only whether it imports
    except ImportError:
        raise CliError(
            "oban metrics needs prometheus-client: pip install 'oban[prometheus]'"
        ) from None


def serve_metrics(oban: Oban, *, host: str, port: int, on_started: Callable[[str], None]) -> None:
    """Serve ``/metrics`` on ``host:port`` until SIGINT or SIGTERM."""
    require_prometheus()
    from prometheus_client import CollectorRegistry, start_http_server

    from ..observability.prometheus import ObanCollector

    registry = CollectorRegistry(auto_describe=False)
    collector = ObanCollector(oban)
    collector.read()  # a database that cannot be read fails here, not at the first scrape
    registry.register(collector)
    try:
        served = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    server, thread = served
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104  # comparing, not binding
    signals = Signals()
    try:
        with signals.installed():
            on_started(f"http://{shown}:{server.server_port}/metrics")
            while not signals.stop.wait(WAKE_EVERY):
                pass
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
