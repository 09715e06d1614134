"""An Apply the panel refused, shown where it was asked: the preview page again, the reason
above the Apply form, what was typed kept (never the password).

When the plan still is the one the operator was shown (a wrong confirmation, another job
running, a wrong password) the preview is shown again as it was, with its form. When the
plan changed since, the page says what changed (the database moved, revisions came or
went, a file was edited) and offers a button to review the new plan; it does not offer to
apply a plan nobody has seen.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from admin import audit, migrations, preview
from admin.errors import AdminError
from admin.rehearsal import actions as rehearsal_actions
from admin.runtime import Runtime
from admin.web import errors
from admin.web.job_requests import Submission
from admin.web.job_views import preview_url
from admin.web.render import render

DIRECTIONS = ("upgrade", "downgrade")


def _current_plan(runtime: Runtime, direction: str, target: str) -> migrations.Plan | None:
    settings = runtime.settings
    try:
        project = migrations.open_project(settings.alembic_config, settings.cache_dir)
        _, current = migrations.read_current(project, settings.database_url)
        return migrations.make_plan(
            project, migrations.Direction(direction), target, current, max_age=0
        )
    except (AdminError, ValueError):
        return None


def page(
    request: Request,
    runtime: Runtime,
    actor: audit.Actor,
    asked: Submission,
    error: AdminError,
) -> Response:
    """The preview page with the refusal in place; its status is the refusal's."""
    kind = asked.kind.strip().lower()
    direction = kind if kind in DIRECTIONS else "upgrade"
    target = asked.target.strip()
    context: dict[str, Any] = {
        "form": {"direction": direction, "target": target, "start": ""},
        "refusal": error,
        "typed": {"confirm_target": asked.confirm_target or ""},
        "review_url": preview_url(direction, target) if target else "/preview",
    }
    with runtime.transaction() as session:
        # A refusal the service did not record itself (a wrong password's 403).
        errors.record_refusal(request, session, actor, error)
        plan = _current_plan(runtime, direction, target) if kind in DIRECTIONS and target else None
        posted = asked.plan_fingerprint
        if plan is not None and posted and plan.fingerprint != posted:
            seen = preview.shown_plan(session, actor.name, posted)
            context["change"] = preview.PlanChange(seen, plan)
        elif plan is not None:
            # The plan the operator saw still stands: show it again, with its form.
            settings = runtime.settings
            project = migrations.open_project(settings.alembic_config, settings.cache_dir)
            wanted = preview.PreviewRequest.parse(direction, target)
            try:
                shown = preview.show(session, actor, project, settings.database_url, wanted)
            except AdminError:
                shown = None  # the refusal alone says enough
            context["preview"] = shown
            context["refusal_in_form"] = shown is not None and not shown.is_empty
            if shown is not None and not shown.is_empty:
                context["rehearsal"] = rehearsal_actions.newest(
                    runtime, shown.plan, shown.script.fingerprint
                )
                context["rehearsal_required"] = settings.rehearsal_required
    return render(request, "preview.html", context, status=error.status)
