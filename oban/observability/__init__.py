"""Seeing what Oban does: logs, OpenTelemetry and Prometheus, over :mod:`oban.telemetry`.

- :mod:`.log`: one telemetry handler writing each event as a structured
  record through the standard :mod:`logging` module (``Oban(telemetry_log=True)``);
- :mod:`.otel`: native OpenTelemetry traces and metrics, on whenever
  ``opentelemetry-api`` is installed (the ``otel`` extra);
- :mod:`.prometheus`: a Prometheus collector reading the figures from the
  database at scrape time (the ``prometheus`` extra), served by ``oban metrics``.

Each optional dependency is imported only by the module that needs it.
"""
