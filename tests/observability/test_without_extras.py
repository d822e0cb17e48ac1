"""Oban without the otel and prometheus extras: everything else works, the rest says
how to install what is missing. Run in a fresh interpreter where importing
``opentelemetry`` and ``prometheus_client`` fails, as when they are not installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import sys
    for name in ("opentelemetry", "prometheus_client"):
        sys.modules[name] = None  # `import name` now raises ImportError

    import oban
    from oban import Oban, telemetry
    from tests.observability import workers

    seen = []
    telemetry.attach(lambda event, data: seen.append(event))
    instance = Oban(testing="inline", telemetry_log=True)
    job = instance.enqueue(workers.Succeed.new({}))
    assert job.state == "completed", job.state
    assert seen == ["job.start", "job.stop", "job.insert"], seen
    try:
        import oban.observability.prometheus
    except ImportError as exc:
        assert "pip install 'oban[prometheus]'" in str(exc), exc
    else:
        raise AssertionError("the prometheus module imported without prometheus_client")
    from oban.cli.main import cli
    from click.testing import CliRunner
    result = CliRunner().invoke(cli, ["metrics", "--database", "sqlite:///:memory:"])
    assert result.exit_code == 1, result.output
    assert "pip install 'oban[prometheus]'" in result.output, result.output
    print("ok")
    """
)


def test_oban_runs_without_the_optional_extras() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("ok")
