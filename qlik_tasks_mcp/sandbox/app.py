"""Assembles the sandbox tenant: seeded people and apps, then each API family's routes."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from qlik_tasks_mcp.sandbox import history as sandbox_history
from qlik_tasks_mcp.sandbox import (
    items,
    large,
    oauth,
    qalyptus,
    qalyptus_seed,
    reload_tasks,
    reloads,
    sharing_seed,
    sharing_tasks,
    spaces,
    users,
)
from qlik_tasks_mcp.sandbox import tasks as workflow_tasks
from qlik_tasks_mcp.sandbox.core import PROFILES, App, Sandbox, User
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
PEOPLE: list[tuple[str, str, bool] | tuple[str, str, bool, str]] = [
    ("Ada Admin", "ada.admin@example.com", True),
    # The `user` profile's key is Ben's (USER_PROFILE_KEY): a member of the Sales and Operations spaces.
    ("Ben Builder", "ben.builder@example.com", False),
    ("Cleo Controller", "cleo.controller@example.com", False),
    ("Dan Data", "dan.data@example.com", False),
    # People who left: they still own apps, tasks and subscriptions (find_orphans finds those).
    ("Eve Exited", "eve.exited@example.com", False, "deleted"),
    ("Finn Frozen", "finn.frozen@example.com", False, "disabled"),
]


def seed_people_and_apps(sandbox: Sandbox, app_count: int) -> None:
    for name, email, admin, *status in PEOPLE:
        user = User(id=sandbox.hex_id(32), name=name, email=email, admin=admin, status=(status or ["active"])[0])
        sandbox.users[user.id] = user
    sandbox.caller_id = next(iter(sandbox.users))
    owners = list(sandbox.users)
    space_ids = spaces.seed(sandbox)
    for index in range(app_count):
        base = APP_NAMES[index % len(APP_NAMES)]
        name = base if index < len(APP_NAMES) else f"{base} {index // len(APP_NAMES) + 1}"
        # Owners start after the caller (the first person), so the first app's tasks change hands on a PUT.
        owner, space_id = owners[(index + 1) % len(owners)], space_ids[index % len(space_ids)]
        app = App(id=sandbox.uuid(), name=name, space_id=space_id, owner_id=owner)
        sandbox.apps[app.id] = app


USER_PROFILE_KEY = "Ben Builder"
USER_PROFILE_SPACES = ("Sales", "Operations")
# Whose spaces are whose, for people who sign in over OAuth (the admin sees every space).
MEMBERS = {
    "Ben Builder": USER_PROFILE_SPACES,
    "Cleo Controller": ("Finance",),
    "Dan Data": ("Operations", "People Analytics"),
}


def seed_memberships(sandbox: Sandbox) -> None:
    by_name = {s["name"]: i for i, s in spaces.table(sandbox).items()}
    for user in sandbox.users.values():
        sandbox.memberships[user.id] = {by_name[name] for name in MEMBERS.get(user.name, ())}


def as_member(sandbox: Sandbox, person: str, space_names: tuple[str, ...]) -> None:
    """The key becomes `person`'s, a member of the spaces named; set after seeding, so the tenant is the same
    whatever the key."""
    sandbox.caller_id = next(u.id for u in sandbox.users.values() if u.name == person)
    sandbox.member_spaces = {i for i, s in spaces.table(sandbox).items() if s["name"] in space_names}


def build_sandbox(
    *,
    seed: int = 7,
    app_count: int = 12,
    rate_limits: bool = True,
    migrated_reload_tasks: int = 0,
    reload_tasks_retired: int | None = None,
    history: bool = False,
    profile: str = "admin",
) -> tuple[Sandbox, ASGIApp]:
    """`migrated_reload_tasks`: that many reload tasks migrated to tasks as Qlik's guide does;
    `reload_tasks_retired`: 404 or 410, the answer of every /api/v1/reload-tasks request (a retired API);
    `history`: sandbox/history.py's two weeks of runs;
    `profile`: whose key the tenant answers (core.PROFILES): the same tenant, seen by another key."""
    if profile not in PROFILES:
        raise ValueError(f"unknown sandbox profile {profile!r}; choose from {', '.join(PROFILES)}")
    sandbox = Sandbox(seed=seed, rate_limits=rate_limits, profile=profile)
    seed_people_and_apps(sandbox, app_count)
    seed_memberships(sandbox)
    # The size switch (sandbox.large): thousands of apps, each with a task, and no reload tasks.
    is_large = app_count >= large.LARGE_FROM
    # One seed call per API family.
    if not is_large:
        reload_tasks.seed(sandbox)
    workflow_tasks.seed(sandbox)
    qalyptus_seed.seed(sandbox)
    sharing_seed.seed(sandbox)
    items.seed(sandbox)
    if is_large:
        large.seed(sandbox)
    else:
        reloads.seed(sandbox)
    reload_tasks.seed_migrated(sandbox, migrated_reload_tasks, workflow_tasks.migrate)
    if profile == "retired":
        # NOTES-2026-11.md section 2: removed on or after 2026-09-29, answered 404 or 410 since.
        reload_tasks_retired = reload_tasks_retired or 404
    if reload_tasks_retired:
        reload_tasks.retire(sandbox, reload_tasks_retired)
    if history:  # two weeks of runs true to every schedule, with known slowdowns, misses and doubles
        sandbox_history.seed(sandbox)
    if profile == "user":
        as_member(sandbox, USER_PROFILE_KEY, USER_PROFILE_SPACES)

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
        *reloads.routes(sandbox),
        *users.routes(sandbox),
        *items.routes(sandbox),
        *spaces.routes(sandbox),
        *oauth.routes(sandbox),
    ]
    app = Starlette(routes=routes)
    app.state.sandbox = sandbox
    return sandbox, FaultInjector(app, sandbox.faults)
