"""Optional glue between Oban and web frameworks, one module per framework.

Nothing here is imported by ``oban`` itself: ``oban.integrations.fastapi``
needs ``pip install 'oban[fastapi]'`` and ``oban.integrations.flask`` needs
``pip install 'oban[flask]'``, and each says so when its framework is missing.
Both are thin: they decide *when* the runtime starts and stops inside the web
process, and show *how* to enqueue inside the request's own transaction
(``conn=``), which is plain :meth:`oban.Oban.enqueue` / ``enqueue_async``.
"""

from __future__ import annotations

__all__: list[str] = []
