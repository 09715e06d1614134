"""Operations endpoints, no sign-in: /readyz (may this process take traffic?) and /metrics.

/healthz (process alive, no database touched) is in app.py.
"""

from __future__ import annotations

import asyncio
import threading

from fastapi import APIRouter, FastAPI
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from admin import health, metrics
from admin.runtime import Runtime
from admin.web import target_reads
from admin.web.principal import runtime_of

router = APIRouter(include_in_schema=False)

# A probe that hangs is worse than one that says no: answer 503 after this long.
READY_TIMEOUT = 5.0
_registry_lock = threading.Lock()


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """200 when the store (at its current schema) and the target answer; 503 and why if not."""
    runtime = runtime_of(request)
    try:
        result = await asyncio.wait_for(
            target_reads.run(request, health.check, runtime), READY_TIMEOUT
        )
    except TimeoutError:
        result = health.Readiness(
            False, f"the databases did not answer within {READY_TIMEOUT:g}s", {}
        )
    return JSONResponse(
        result.as_json(),
        status_code=200 if result.ready else 503,
        headers={"Cache-Control": "no-store"},
    )


def _open_streams(app: FastAPI) -> int:
    hub = getattr(app.state, "hub", None)
    return int(getattr(hub, "open_streams", 0)) if hub is not None else 0


def registry_of(app: FastAPI) -> CollectorRegistry:
    """The app's own registry, made at the first scrape (the runtime exists by then)."""
    with _registry_lock:
        registry: CollectorRegistry | None = getattr(app.state, "metrics_registry", None)
        if registry is None:
            registry = metrics.make_registry(lambda: _runtime(app), lambda: _open_streams(app))
            app.state.metrics_registry = registry
        return registry


def _runtime(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


@router.get("/metrics")
async def prometheus_metrics(request: Request) -> Response:
    """Prometheus text format, read from the store and the target at scrape time."""
    body = await target_reads.run(request, generate_latest, registry_of(request.app))
    return Response(body, media_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})
