"""Sharing tasks (`/api/v1/sharing-tasks`): report subscriptions, chart sharing and monitoring, executions, settings."""

import time
from typing import Annotated, Any, Literal

import anyio
from mcp.server.mcpserver import Context, Elicit, ElicitationResult, Resolve
from pydantic import Field

from qlik_tasks_mcp.client.errors import ApiError, InvalidInput
from qlik_tasks_mcp.client.sharing_tasks import (
    FINAL_STATUSES,
    RUNNING_STATUSES,
    SharingTasksApi,
    recipient_limit,
    recipient_values,
)
from qlik_tasks_mcp.tools.common import ConfirmToken, Cursor, Limit, Registrar
from qlik_tasks_mcp.tools.gate import Consent, Gated, Plan
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.sharing_model import (
    Channel,
    Content,
    ExecutionDetail,
    ExecutionRow,
    Recipients,
    SharingSchedule,
    SharingSettingsView,
    SharingTaskDetail,
    SharingTaskRow,
    SharingType,
    is_enabled,
    recipients_line,
    replacement_recipients,
    schedule_line,
    transport_problem,
    who,
)
from qlik_tasks_mcp.tools.watch import Progress, WaitSeconds, watch

TOOLSET = "sharing"

TaskId = Annotated[str, Field(min_length=1, max_length=128, description="Sharing task id.")]
ExecutionId = Annotated[str, Field(min_length=1, max_length=128, description="Execution id.")]
Text = Annotated[str | None, Field(max_length=255)]
SORTS = Literal["name", "-name", "datecreated", "-datecreated", "status", "-status", "type", "-type", "-scheduled"]


class SharingTaskPage(Compact):
    tasks: list[SharingTaskRow]
    total: int | None = None
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")


class SharingTaskResult(Compact):
    task: SharingTaskDetail
    note: str | None = None


class ExecutionPage(Compact):
    task_id: str
    executions: list[ExecutionRow]
    total: int | None = None
    next_cursor: str | None = Field(None, description="Pass as cursor for more; absent on the last page.")


class ExecuteResult(Compact):
    task_id: str
    started: bool
    executions: list[ExecutionRow] = []
    wait_ended: Literal["finished", "timeout"] | None = None
    waited_seconds: float | None = None
    note: str | None = None


class Done(Compact):
    id: str
    done: str


class PatchResult(Compact):
    task: SharingTaskDetail
    ops: list[str]


def register(reg: Registrar, api: SharingTasksApi) -> None:
    @reg.tool(TOOLSET, "read", title="List sharing tasks")
    async def list_sharing_tasks(
        app_id: Annotated[str | None, Field(max_length=128, description="Only this app's tasks.")] = None,
        owner_id: Annotated[str | None, Field(max_length=128)] = None,
        owner_name: Annotated[str | None, Field(max_length=200)] = None,
        role: Annotated[
            list[Literal["owner", "recipient"]] | None, Field(max_length=2, description="Caller's role in the task.")
        ] = None,
        types: Annotated[list[SharingType] | None, Field(max_length=4)] = None,
        template_ids: Annotated[list[str] | None, Field(max_length=20)] = None,
        exclude_deleting: bool = True,
        sort: SORTS = "name",
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> SharingTaskPage:
        """List report subscriptions and chart sharing/monitoring: type, owner, enabled, status, next/last run."""
        params: dict[str, Any] = {"sort": sort, "excludeDeleting": "true" if exclude_deleting else "false"}
        for key, value in (("appid", app_id), ("owner", owner_id), ("ownername", owner_name)):
            if value:
                params[key] = value
        for key, values in (("role", role), ("type", types), ("templateId", template_ids)):
            if values:
                params[key] = list(dict.fromkeys(values))
        page = await api.list(params, limit=limit, cursor=cursor)
        return SharingTaskPage(
            tasks=[SharingTaskRow.of(t) for t in page.items], total=page.total, next_cursor=page.next_cursor
        )

    @reg.tool(TOOLSET, "read", title="Get sharing task")
    async def get_sharing_task(task_id: TaskId) -> SharingTaskResult:
        """One sharing task: schedule, recipients (with their errors), content, status and task errors."""
        return SharingTaskResult(task=SharingTaskDetail.of(await api.get(task_id)))

    async def check_recipients(count: int, task_type: str) -> None:
        settings = await api.settings()
        if settings.get("enable-sharing") is False:
            raise InvalidInput(
                "sharing is disabled on this tenant (settings enable-sharing=false); a tenant admin can enable it"
            )
        cap = recipient_limit(settings, task_type)
        if cap is not None and count > cap:
            over = count - cap
            raise InvalidInput(
                f"{count} recipients is more than the tenant allows on a {task_type} ({cap}): remove {over}"
            )

    @reg.tool(TOOLSET, "write", title="Create sharing task")
    async def create_sharing_task(
        name: Annotated[str, Field(min_length=1, max_length=200)],
        type: Annotated[SharingType, Field(description="template-sharing cannot be created through the API.")],
        content: Content,
        recipients: Recipients,
        schedule: Annotated[SharingSchedule | None, Field(description="When to send; omit with on_app_reload.")] = None,
        on_app_reload: Annotated[bool, Field(description="Send after each reload of the app.")] = False,
        transport: Annotated[list[Channel], Field(min_length=1, max_length=2)] = ["email"],  # noqa: B006
        sharepoint_folder: Annotated[str | None, Field(max_length=1000)] = None,
        data_connection_id: Annotated[str | None, Field(max_length=128)] = None,
        email_subject: Annotated[str | None, Field(max_length=255)] = None,
        email_body: Annotated[str | None, Field(max_length=5000)] = None,
        message: Annotated[str | None, Field(max_length=280)] = None,
        description: Text = None,
        tags: Annotated[list[str], Field(max_length=20)] = [],  # noqa: B006
        history_size: Annotated[
            int | None, Field(ge=1, le=100, description="Reports kept; chart-monitoring takes only 10.")
        ] = None,
        execute_on_creation: Annotated[bool, Field(description="Also send once right away.")] = False,
        enabled: bool = True,
    ) -> SharingTaskResult:
        """Create a sheet/chart report subscription or chart monitoring. Validated against the spec and tenant first."""
        if type == "chart-monitoring" and history_size not in (None, 10):
            raise InvalidInput(f"history_size {history_size}: chart-monitoring keeps exactly 10; leave it out")
        if schedule is None and not on_app_reload:
            raise InvalidInput("give a schedule, or on_app_reload=true to send after each app reload")
        problem = transport_problem(list(transport), sharepoint_folder, data_connection_id)
        if problem:
            raise InvalidInput(problem)
        recipient_body = recipients.to_api()
        if not recipient_body:
            raise InvalidInput("recipients is empty: give user_ids, group_ids or emails")
        body: dict[str, Any] = {
            "name": name,
            "type": type,
            "state": {},
            "templates": content.templates(type),
            "recipients": recipient_body,
            "transportChannels": list(dict.fromkeys(transport)),
            "enabled": enabled,
            "executeOnCreation": execute_on_creation,
        }
        lines: list[str] = []
        if schedule is not None:
            body["scheduleOptions"] = schedule.to_api()
            lines = body["scheduleOptions"]["recurrence"]
        body["trigger"] = {"recurrence": lines, "executeOnAppReload": on_app_reload}
        if type == "chart-monitoring":
            body["retentionPolicy"] = {"historySize": history_size or 10, "overrideInterval": "FREQ=DAILY;INTERVAL=1"}
        elif history_size:
            body["retentionPolicy"] = {"historySize": history_size}
        optional = {
            "sharePointFolder": sharepoint_folder,
            "dataConnectionID": data_connection_id,
            "message": message,
            "description": description,
        }
        body.update({k: v for k, v in optional.items() if v})
        if tags:
            body["tags"] = list(dict.fromkeys(tags))
        if email_subject or email_body:
            body["emailContent"] = {"subject": email_subject or "", "body": email_body or ""}
        await check_recipients(recipients.count(), type)
        return SharingTaskResult(task=SharingTaskDetail.of(await api.create(body)))

    async def plan_patch(
        task_id: str,
        fields: dict[str, Any],
    ) -> tuple[Plan, list[dict[str, Any]]]:
        current = await api.get(task_id)
        ops: list[dict[str, Any]] = []
        changes: list[str] = []
        risky: list[str] = []

        def replace(path: str, value: Any, shown: str) -> None:
            ops.append({"op": "replace", "path": path, "value": value})
            changes.append(shown)

        def text(path: str, key: str, value: str | None, label: str) -> None:
            if value is None:
                return
            if value == "":
                if current.get(key):
                    ops.append({"op": "remove", "path": path})
                    changes.append(f"{label}: {current.get(key)!r} -> removed")
            elif value != current.get(key):
                replace(path, value, f"{label}: {current.get(key)!r} -> {value!r}")

        text("/name", "name", fields["name"], "name")
        text("/description", "description", fields["description"], "description")
        if fields["tags"] is not None and list(fields["tags"]) != (current.get("tags") or []):
            replace(
                "/tags", list(dict.fromkeys(fields["tags"])), f"tags: {current.get('tags') or []} -> {fields['tags']}"
            )
        enabled = fields["enabled"]
        # The user's own switch: a task the system paused can still be switched off so it stays off when the
        # system lets it run again, and switching it on also lifts the system's pause.
        user_on = current.get("enabledByUser", current.get("enabled", True)) is not False
        if (enabled is True and not is_enabled(current)) or (enabled is False and user_on):
            paused = " (also paused by the system)" if user_on and not is_enabled(current) else ""
            replace("/enabled", enabled, f"enabled: {is_enabled(current)}{paused} -> {enabled}")
            if not enabled:
                risky.append("disables the task: nobody receives it until it is enabled again")
        owner = fields["owner_id"]
        if owner is not None and owner != current.get("owner"):
            replace("/ownerId", owner, f"owner: {current.get('ownerName') or current.get('owner')} -> {owner}")
            risky.append("changes the owner: the report then runs with the new owner's access")
        schedule: SharingSchedule | None = fields["schedule"]
        if schedule is not None:
            before = current.get("scheduleOptions") or {}
            new = schedule.to_api(before)
            if schedule_line(new) != schedule_line(before):
                replace("/scheduleOptions", new, f"schedule: {schedule_line(before)} -> {schedule_line(new)}")
        recipients: Recipients | None = fields["recipients"]
        if recipients is not None:
            wanted = recipients.to_api()
            if not wanted:
                raise InvalidInput("recipients would be empty; disable the task (enabled=false) instead")
            new_body, woken = replacement_recipients(current.get("recipients"), wanted)
            old, new_values = recipient_values(current.get("recipients")), recipient_values(new_body)
            removed = [f"{k[:-1]} {v}" for k in old for v in old[k] if v not in new_values[k]]
            added = [f"{k[:-1]} {v}" for k in new_values for v in new_values[k] if v not in old[k]]
            if removed or added:
                await check_recipients(recipients.count(), current.get("type", ""))
                replace(
                    "/recipients",
                    new_body,
                    f"recipients: {recipients_line(current.get('recipients'))} -> {recipients_line(new_body)}"
                    + (f"; adds {', '.join(added)}" if added else ""),
                )
            if removed:
                risky.append(f"removes recipients: {', '.join(removed)}")
            if woken and (removed or added):
                risky.append(f"switches back on addresses that were switched off: {', '.join(woken)}")
        content: Content | None = fields["content"]
        if content is not None:
            replace("/templates", content.templates(current.get("type", "")), "content: replaced")
        transport, folder, connection = fields["transport"], fields["sharepoint_folder"], fields["data_connection_id"]
        channels_before = current.get("transportChannels") or []
        if transport is not None or folder is not None or connection is not None:
            # Checked as the task will be after the patch: "" removes a folder or connection.
            channels = list(dict.fromkeys(transport)) if transport is not None else channels_before
            after_folder = current.get("sharePointFolder") if folder is None else folder
            after_connection = current.get("dataConnectionID") if connection is None else connection
            problem = transport_problem(channels, after_folder or None, after_connection or None)
            if problem:
                raise InvalidInput(problem)
            if channels != channels_before:
                replace("/transportChannels", channels, f"transport: {channels_before} -> {channels}")
                lost = [c for c in channels_before if c not in channels]
                if lost:
                    risky.append(f"stops delivery by {' and '.join(lost)} to every recipient")
        text("/sharePointFolder", "sharePointFolder", fields["sharepoint_folder"], "SharePoint folder")
        text("/dataConnectionID", "dataConnectionID", fields["data_connection_id"], "data connection")
        text("/bookmarkId", "bookmarkId", fields["bookmark_id"], "bookmark (filter)")
        if not ops:
            raise InvalidInput("the task already has these values; nothing to change")
        plan = Plan(
            action=f"Change {who(current)}",
            changes=changes,
            state=current,
            notes=risky,
            needs_consent=bool(risky),
        )
        return plan, ops

    @reg.resolver
    async def ask_patch(
        ctx: Context,
        task_id: str,
        name: str | None = None,
        description: str | None = None,
        tags: list[str] | None = None,
        enabled: bool | None = None,
        owner_id: str | None = None,
        schedule: SharingSchedule | None = None,
        recipients: Recipients | None = None,
        content: Content | None = None,
        transport: list[Channel] | None = None,
        sharepoint_folder: str | None = None,
        data_connection_id: str | None = None,
        bookmark_id: str | None = None,
    ) -> Elicit[Consent] | None:
        fields = dict(locals())
        fields.pop("ctx")
        fields.pop("task_id")

        async def plan() -> Plan:
            return (await plan_patch(task_id, fields))[0]

        return await reg.gate.ask(ctx, plan)

    @reg.tool(TOOLSET, "destructive", title="Change sharing task", idempotent=True)
    async def patch_sharing_task(
        task_id: TaskId,
        consent: Annotated[ElicitationResult[Consent], Resolve(ask_patch)],
        name: Annotated[str | None, Field(min_length=1, max_length=200)] = None,
        description: Annotated[str | None, Field(max_length=255, description='"" removes it.')] = None,
        tags: Annotated[list[str] | None, Field(max_length=20)] = None,
        enabled: bool | None = None,
        owner_id: Annotated[str | None, Field(min_length=1, max_length=128, description="New owner's user id.")] = None,
        schedule: SharingSchedule | None = None,
        recipients: Annotated[
            Recipients | None, Field(description="Replaces the list; distribution-list members stay.")
        ] = None,
        content: Annotated[Content | None, Field(description="Replaces what the report shows.")] = None,
        transport: Annotated[list[Channel] | None, Field(min_length=1, max_length=2)] = None,
        sharepoint_folder: Annotated[str | None, Field(max_length=1000, description='"" removes it.')] = None,
        data_connection_id: Annotated[str | None, Field(max_length=128, description='"" removes it.')] = None,
        bookmark_id: Annotated[str | None, Field(max_length=128, description='Filter; "" removes it.')] = None,
        confirm_token: ConfirmToken = None,
    ) -> Gated[PatchResult]:
        """Change only the given fields. Changes that take something away (disable, owner, recipients, channel)
        need the user's confirmation."""
        fields = {
            "name": name,
            "description": description,
            "tags": tags,
            "enabled": enabled,
            "owner_id": owner_id,
            "schedule": schedule,
            "recipients": recipients,
            "content": content,
            "transport": transport,
            "sharepoint_folder": sharepoint_folder,
            "data_connection_id": data_connection_id,
            "bookmark_id": bookmark_id,
        }
        plan, ops = await plan_patch(task_id, fields)

        async def act() -> PatchResult:
            await api.patch(task_id, ops)
            shown = [f"{o['op']} {o['path']}" for o in ops]
            return PatchResult(task=SharingTaskDetail.of(await api.get(task_id)), ops=shown)

        return await reg.gate.run(plan=plan, consent=consent, confirm_token=confirm_token, act=act)

    async def plan_delete(task_id: str) -> Plan:
        current = await api.get(task_id)
        return Plan(
            action=f"Delete {who(current)}",
            changes=[f"the task, its schedule and execution history; {recipients_line(current.get('recipients'))}"],
            state=current,
            notes=["This cannot be undone; recipients stop receiving the report."],
        )

    @reg.resolver
    async def ask_delete(ctx: Context, task_id: str) -> Elicit[Consent] | None:
        return await reg.gate.ask(ctx, lambda: plan_delete(task_id))

    @reg.tool(TOOLSET, "destructive", title="Delete sharing task", idempotent=True)
    async def delete_sharing_task(
        task_id: TaskId,
        consent: Annotated[ElicitationResult[Consent], Resolve(ask_delete)],
        confirm_token: ConfirmToken = None,
    ) -> Gated[Done]:
        """Delete a sharing task. Needs the user's confirmation."""
        plan = await plan_delete(task_id)

        async def act() -> Done:
            await api.delete(task_id)
            return Done(id=task_id, done="deleted")

        return await reg.gate.run(plan=plan, consent=consent, confirm_token=confirm_token, act=act)

    async def running(task_id: str) -> list[dict[str, Any]]:
        page = await api.executions(task_id, limit=50)
        return [e for e in page.items if e.get("status") in RUNNING_STATUSES]

    async def plan_cancel(task_id: str) -> Plan:
        current = await api.get(task_id)
        active = await running(task_id)
        if not active:
            raise InvalidInput(f"{who(current)} has no execution in progress; nothing to cancel")
        targets = [ExecutionRow.of(e).recipient or e.get("id", "") for e in active]
        return Plan(
            action=f"Cancel the running execution of {who(current)}",
            changes=[f"{len(active)} in-progress deliveries stop: {', '.join(targets[:10])}"],
            state=[e.get("id") for e in active],
            notes=["Recipients not yet served will not get this run's report."],
        )

    @reg.resolver
    async def ask_cancel(ctx: Context, task_id: str) -> Elicit[Consent] | None:
        return await reg.gate.ask(ctx, lambda: plan_cancel(task_id))

    @reg.tool(TOOLSET, "destructive", title="Cancel sharing task run", idempotent=True)
    async def cancel_sharing_task(
        task_id: TaskId,
        consent: Annotated[ElicitationResult[Consent], Resolve(ask_cancel)],
        confirm_token: ConfirmToken = None,
    ) -> Gated[Done]:
        """Cancel the task's execution in progress. Needs the user's confirmation."""
        plan = await plan_cancel(task_id)

        async def act() -> Done:
            await api.cancel(task_id)
            return Done(id=task_id, done="cancel requested")

        return await reg.gate.run(plan=plan, consent=consent, confirm_token=confirm_token, act=act)

    async def new_executions(task_id: str, before: set[str]) -> list[dict[str, Any]]:
        page = await api.executions(task_id, limit=100)
        return [e for e in page.items if e.get("id") not in before]

    @reg.tool(TOOLSET, "write", title="Execute sharing task")
    async def execute_sharing_task(
        ctx: Context,
        task_id: TaskId,
        wait: Annotated[bool, Field(description="Wait for every delivery to end, with progress.")] = False,
        timeout_seconds: WaitSeconds = 60,
    ) -> ExecuteResult:
        """Send the task's report now to all its recipients; wait=true follows the deliveries to the end."""
        before = {e.get("id", "") for e in (await api.executions(task_id, limit=100)).items}
        await api.execute(task_id)
        # From here on the task has been executed: no error may suggest executing it again.
        began = time.monotonic()
        result = ExecuteResult(task_id=task_id, started=True)
        try:
            if not wait:
                await anyio.sleep(0.2)
                result.executions = [ExecutionRow.of(e) for e in await new_executions(task_id, before)]
                result.note = "Follow it with list_sharing_task_executions."
                return result
            progress = Progress(ctx, timeout_seconds)
            await progress.report(0, "executed; waiting for deliveries")
            found, finished = await watch(
                lambda: new_executions(task_id, before),
                lambda xs: bool(xs) and all(e.get("status") in FINAL_STATUSES for e in xs),
                lambda xs: (
                    f"{sum(e.get('status') in FINAL_STATUSES for e in xs or [])}/{len(xs or [])} deliveries done"
                ),
                progress=progress,
                limit=timeout_seconds,
                began=began,
            )
            result.executions = [ExecutionRow.of(e) for e in found or []]
            result.waited_seconds = round(time.monotonic() - began, 1)
            result.wait_ended = "finished" if finished else "timeout"
            failed = [e for e in result.executions if e.status == "failed"]
            if not finished:
                result.note = f"Stopped waiting after {timeout_seconds} s; the deliveries continue on the tenant."
            elif failed:
                result.note = f"{len(failed)} deliveries failed; get_sharing_task_execution says why."
        except ApiError as exc:
            result.note = (
                f"The task was executed, but reading its executions failed ({exc}). Do not execute it again; "
                "check with list_sharing_task_executions."
            )
        return result

    @reg.tool(TOOLSET, "read", title="List sharing task executions")
    async def list_sharing_task_executions(
        task_id: TaskId,
        status: Literal["successful", "failed"] | None = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> ExecutionPage:
        """A task's deliveries, newest first: status, recipient, error codes."""
        page = await api.executions(task_id, limit=limit, status=status, cursor=cursor)
        return ExecutionPage(
            task_id=task_id,
            executions=[ExecutionRow.of(e) for e in page.items],
            total=page.total,
            next_cursor=page.next_cursor,
        )

    @reg.tool(TOOLSET, "read", title="Get sharing task execution")
    async def get_sharing_task_execution(task_id: TaskId, execution_id: ExecutionId) -> ExecutionDetail:
        """One delivery: status, recipient, errors (why a report did not arrive), files."""
        return ExecutionDetail.of(await api.execution(task_id, execution_id))

    @reg.tool(TOOLSET, "read", title="Get sharing settings")
    async def get_sharing_settings() -> SharingSettingsView:
        """Tenant sharing settings: sharing and report subscriptions on/off, recipient limits, license."""
        return SharingSettingsView.of(await api.settings())

    async def plan_settings(
        sharing_enabled: bool | None, report_subscription_enabled: bool | None
    ) -> tuple[Plan, list[dict[str, Any]]]:
        current = await api.settings()
        ops: list[dict[str, Any]] = []
        changes: list[str] = []
        notes: list[str] = []
        for path, key, value in (
            ("/enable-sharing", "enable-sharing", sharing_enabled),
            ("/enable-report-subscription", "enable-report-subscription", report_subscription_enabled),
        ):
            if value is not None and value != current.get(key):
                ops.append({"op": "replace", "path": path, "value": value})
                changes.append(f"{key}: {current.get(key)} -> {value}")
                if not value:
                    notes.append(f"turning {key} off stops it for every user of the tenant")
        if not ops:
            raise InvalidInput("the settings already have these values; nothing to change")
        notes.append("Only a tenant admin may change these settings.")
        return Plan(action="Change the tenant's sharing settings", changes=changes, state=current, notes=notes), ops

    @reg.resolver
    async def ask_settings(
        ctx: Context, sharing_enabled: bool | None = None, report_subscription_enabled: bool | None = None
    ) -> Elicit[Consent] | None:
        async def plan() -> Plan:
            return (await plan_settings(sharing_enabled, report_subscription_enabled))[0]

        return await reg.gate.ask(ctx, plan)

    @reg.tool(TOOLSET, "destructive", title="Update sharing settings", idempotent=True)
    async def update_sharing_settings(
        consent: Annotated[ElicitationResult[Consent], Resolve(ask_settings)],
        sharing_enabled: bool | None = None,
        report_subscription_enabled: bool | None = None,
        confirm_token: ConfirmToken = None,
    ) -> Gated[SharingSettingsView]:
        """Turn sharing or report subscriptions on/off tenant-wide (tenant admin). Needs the user's confirmation."""
        plan, ops = await plan_settings(sharing_enabled, report_subscription_enabled)

        async def act() -> SharingSettingsView:
            await api.patch_settings(ops)
            return SharingSettingsView.of(await api.settings())

        return await reg.gate.run(plan=plan, consent=consent, confirm_token=confirm_token, act=act)
