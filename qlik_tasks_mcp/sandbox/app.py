"""Assembles the sandbox tenant: seeded people and apps, then each API family's routes."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from qlik_tasks_mcp.sandbox import qalyptus, qalyptus_seed, reload_tasks, sharing_seed, sharing_tasks, users
from qlik_tasks_mcp.sandbox import tasks as workflow_tasks
from qlik_tasks_mcp.sandbox.core import App, Sandbox, User
from qlik_tasks_mcp.sandbox.faults import FaultInjector

APP_NAMES = [
    "Sales Dashboard",
    "Finance P&L",
    "Supply Chain Control Tower",
    "HR Headcount",
    "Marketing Funnel",
    "Customer Churn",
    "Inventory Aging",
    "Executive KPIs",
    "Logistics On-Time Delivery",
    "Procurement Spend",
    "Service Desk SLA",
    "Web Analytics",
]
PEOPLE = [
    ("Ada Admin", "ada.admin@example.com", True),
    ("Ben Builder", "ben.builder@example.com", False),
    ("Cleo Controller", "cleo.controller@example.com", False),
    ("Dan Data", "dan.data@example.com", False),
]


def seed_people_and_apps(sandbox: Sandbox, app_count: int) -> None:
    for name, email, admin in PEOPLE:
        user = User(id=sandbox.hex_id(32), name=name, email=email, admin=admin)
        sandbox.users[user.id] = user
    sandbox.caller_id = next(iter(sandbox.users))
    owners = list(sandbox.users)
    for index in range(app_count):
        base = APP_NAMES[index % len(APP_NAMES)]
        name = base if index < len(APP_NAMES) else f"{base} {index // len(APP_NAMES) + 1}"
        app = App(id=sandbox.uuid(), name=name, space_id=sandbox.hex_id(), owner_id=owners[index % len(owners)])
        sandbox.apps[app.id] = app


def build_sandbox(*, seed: int = 7, app_count: int = 12, rate_limits: bool = True) -> tuple[Sandbox, ASGIApp]:
    sandbox = Sandbox(seed=seed, rate_limits=rate_limits)
    seed_people_and_apps(sandbox, app_count)
    # One seed call per API family.
    reload_tasks.seed(sandbox)
    workflow_tasks.seed(sandbox)
    qalyptus_seed.seed(sandbox)
    sharing_seed.seed(sandbox)

    async def health(_: Request) -> Response:
        return JSONResponse({"sandbox": True, "apps": len(sandbox.apps)})

    # One entry per API family.
    routes = [
        # Qalyptus organizations first: they are told apart by host, and their paths collide with Qlik's.
        *qalyptus.hosts(sandbox),
        Route("/sandbox/health", health, methods=["GET"]),
        *reload_tasks.routes(sandbox),
        *workflow_tasks.routes(sandbox),
        *sharing_tasks.routes(sandbox),
        *users.routes(sandbox),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = sandbox
    return sandbox, FaultInjector(app, sandbox.faults)
