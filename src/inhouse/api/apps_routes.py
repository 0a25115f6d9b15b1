"""The assistants over HTTP: one entry point, ``add_apps_routes(router, services)``, that ``build_app`` calls.

Each assistant keeps its routes in its own module (``support_routes``, ``schedule_routes``, …); this module only
gathers them, so that adding an assistant is one line here. Every route declares its action (``apps:use``, or
``apps:support`` for the customer-service routes a widget's scoped key may call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter

from inhouse.api.minutes_routes import add_minutes_routes
from inhouse.api.outline_routes import add_outline_routes
from inhouse.api.schedule_routes import add_schedule_routes
from inhouse.api.support_routes import WidgetCorsMiddleware, add_support_routes

if TYPE_CHECKING:
    from inhouse.api.app import ServicesLike

__all__ = ["WidgetCorsMiddleware", "add_apps_routes"]


def add_apps_routes(router: APIRouter, services: ServicesLike) -> None:
    add_support_routes(router, services)
    add_schedule_routes(router, services)
    add_minutes_routes(router, services)
    add_outline_routes(router, services)
