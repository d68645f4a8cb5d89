"""Valid arguments for every tool, so the fault and abuse suite can call the whole catalogue.

A new tool without an entry here fails `test_every_tool_has_a_sample`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from tests.conftest import Harness

Sample = Callable[[Harness, bool], Awaitable[dict[str, Any]]]
SAMPLES: dict[str, Sample] = {}


def sample(name: str) -> Callable[[Sample], Sample]:
    def register(fn: Sample) -> Sample:
        SAMPLES[name] = fn
        return fn

    return register


async def sample_args(h: Harness, name: str, *, destructive: bool = False) -> dict[str, Any]:
    return await SAMPLES[name](h, destructive)


def _enabled_reload_task(h: Harness) -> str:
    return next(t["id"] for t in h.sandbox.tables["reload_tasks"].values() if t["state"] == "Enabled")


@sample("list_reload_tasks")
async def _list_reload(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"limit": 5}


@sample("get_reload_task")
async def _get_reload(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _enabled_reload_task(h)}


@sample("create_reload_task")
async def _create_reload(h: Harness, destructive: bool) -> dict[str, Any]:
    return {
        "app_id": next(iter(h.sandbox.apps)),
        "schedule": {"recurrence": ["RRULE:FREQ=DAILY;BYHOUR=6;BYMINUTE=0;BYSECOND=0"], "time_zone": "UTC"},
    }


@sample("update_reload_task")
async def _update_reload(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _enabled_reload_task(h), "enabled": False}


@sample("delete_reload_task")
async def _delete_reload(h: Harness, destructive: bool) -> dict[str, Any]:
    return {"task_id": _enabled_reload_task(h)}
