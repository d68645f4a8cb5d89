"""Qalyptus report tasks of every configured organization as the ops tools see them (`QalyptusTaskSource`): read,
listed with their owners and triggers, enabled, deleted, handed over, and their failed runs found in a window."""

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from qlik_tasks_mcp.client import qalyptus_schedule as sched
from qlik_tasks_mcp.client.errors import ApiError
from qlik_tasks_mcp.client.qalyptus import QalyptusClient, QalyptusTaskDoc, StatusDoc, TriggerDoc
from qlik_tasks_mcp.client.schedule import Schedule
from qlik_tasks_mcp.tools.names import UNSEEN, UserName, user_label
from qlik_tasks_mcp.tools.qalyptus import delivery
from qlik_tasks_mcp.tools.qalyptus.models import QalyptusOrgs, classify, event_words, owner_id_of, owner_label, text_of
from qlik_tasks_mcp.tools.sources import (
    ERROR_LINE,
    Budget,
    Failure,
    FailureScan,
    Handover,
    Narrow,
    TaskInfo,
    gather,
    parse_time,
    read_each,
    scan_now,
)


class FirstErrorLine:
    """A log sink (client/lines.py) that keeps the first error line (with the next one when it announces the
    error, as sources.first_error_line does) and ends the reading there."""

    def __init__(self) -> None:
        self.total_lines = 0
        self._found: str | None = None
        self._announced = False

    @property
    def line(self) -> str | None:
        return self._found[:300] if self._found is not None else None

    def feed(self, number: int, line: str) -> bool:
        self.total_lines = number + 1
        if self._announced:
            self._found = f"{self._found} {line.strip()}"
            return False
        if not ERROR_LINE.search(line):
            return True
        self._found = line.strip()
        self._announced = self._found.endswith(":")
        return self._announced


class QalyptusTaskSource:
    """Report tasks of every configured organization as the ops tools see them; a failure is a failed run."""

    kind = "qalyptus"
    chains = False

    def __init__(self, orgs: QalyptusOrgs) -> None:
        self.orgs = orgs

    async def _find(self, task_id: str) -> tuple[QalyptusClient, QalyptusTaskDoc]:
        """A task id is unique to its organization: ask each configured one in turn."""
        last: ApiError | None = None
        for name in self.orgs.names:
            client = self.orgs.get(name)
            try:
                return client, await client.task(task_id)
            except ApiError as exc:
                if exc.status not in (400, 404):
                    raise
                last = exc
        assert last is not None
        raise last

    @staticmethod
    def info(doc: QalyptusTaskDoc) -> TaskInfo:
        return TaskInfo(
            kind="qalyptus",
            id=doc.id,
            name=doc.name,
            enabled=doc.is_active,
            state="active" if doc.is_active else "inactive",
            disabled_reason=None if doc.is_active else "inactive",
            owner_label=owner_label(doc),
        )

    async def get(self, task_id: str) -> TaskInfo:
        """The task with every active schedule trigger; a task run only by Qlik events says so in words."""
        client, doc = await self._find(task_id)
        return await self._timed(self.info(doc), await client.triggers(task_id))

    @staticmethod
    def time_schedules(triggers: list[TriggerDoc]) -> list[Schedule]:
        """Every active schedule trigger read whole (schedule_of): an inactive one is no due time, an event no
        time."""
        found = [sched.schedule_of(t.wire()) for t in triggers if t.is_active is not False]
        return [s for s in found if s is not None]

    async def _timed(self, info: TaskInfo, triggers: list[TriggerDoc]) -> TaskInfo:
        """`info` with its time schedules (`schedules`) and, in words, what else starts it (`also`); without an
        active schedule, what starts it (`schedule_text`), and that its schedules are inactive where it has some."""
        info.schedules = self.time_schedules(triggers)
        events = [t for t in triggers if not t.scheduled and t.is_active is not False]
        labels = await self.orgs.app_labels([e.app_id for e in events if e.app_id]) if events else {}
        words = "; ".join(filter(None, (event_words(e, labels) for e in events)))
        if info.schedules:
            info.also = f"Also runs {words[0].lower()}{words[1:]}." if words else None
            return info
        paused = sum(1 for t in triggers if t.scheduled and t.is_active is False)
        idle = f"no active schedule ({paused} inactive schedule trigger{'s' if paused > 1 else ''})" if paused else ""
        info.schedule_text = "; ".join(filter(None, [words, idle])) or None
        return info

    async def many(self, task_ids: list[str]) -> dict[str, TaskInfo]:
        return await read_each(task_ids, self.get)

    async def of_app(self, app_id: str) -> list[TaskInfo]:
        """Tasks a Qlik event of this app starts (their only tie to a Qlik app): the organization's tasks, then
        each one's triggers (Qalyptus has no query by app), with bounded concurrency."""
        found: list[TaskInfo] = []
        for name in self.orgs.names:
            client = self.orgs.get(name)

            async def one(doc: QalyptusTaskDoc, client: QalyptusClient = client) -> None:
                triggers = await client.triggers(doc.id)
                if any(not t.scheduled and t.app_id == app_id and t.is_active is not False for t in triggers):
                    info = self.info(doc)
                    info.app_id = app_id
                    found.append(await self._timed(info, triggers))

            await gather(await client.tasks(), one)
        return sorted(found, key=lambda t: (t.name.casefold(), t.id))

    async def app_ids(self) -> set[str]:
        return set()

    async def all_tasks(self, budget: Budget, narrow: Narrow | None = None) -> list[TaskInfo]:
        """Every task of every organization, each marked (owner_gone) when its owner is no longer among the
        organization's users: two requests per organization (find_orphans). With `narrow.owner_id` (a Qlik user),
        the tasks that are theirs carry it as owner_id: those whose owner has their id or is the organization's
        user matched to them (delivery.matched_user)."""
        person = await self._qlik_user(narrow.owner_id) if narrow is not None and narrow.owner_id else None
        found: list[TaskInfo] = []
        for name in self.orgs.names:
            client = self.orgs.get(name)
            if not budget.spend(scan_now(), f"Qalyptus tasks of {name}"):
                continue
            tasks = await client.tasks()
            unread: list[str] = []
            users = await self._users(client, name, unread, budget)
            if unread:
                known = f"only its tasks owned by id {person.id} are theirs" if person else "its owners are not checked"
                budget.notes.append(f"{unread[0]}: {known}.")
            ids = None if users is None else {str(u["id"]) for u in users if u.get("id") not in (None, "")}
            theirs = await self._theirs(person, users, name, tasks, budget.notes) if person is not None else set()
            for doc in tasks:
                info = self.info(doc)
                owner = owner_id_of(doc)
                if ids is not None and owner and owner not in ids:
                    info.owner_gone = f"{owner_label(doc)}, no longer a user of Qalyptus organization {name}"
                if person is not None and owner in theirs:
                    info.owner_id = person.id
                found.append(info)
        return found

    async def _theirs(
        self,
        person: UserName,
        users: list[dict[str, Any]] | None,
        org: str,
        tasks: list[QalyptusTaskDoc],
        notes: list[str],
    ) -> set[str]:
        """The owner ids that are this Qlik user in an organization: theirs, and the user matched to them. Where
        none is, tasks whose owner is no longer a user there and not another Qlik user by id could be theirs: named,
        not taken as someone else's."""
        matched = delivery.matched_user(users or [], person.id, person.email)
        if matched is not None:
            return {person.id, str(matched["id"])}
        if users is not None:
            present = {str(u.get("id")) for u in users} | {person.id}
            maybe = {d.id: owner for d in tasks if (owner := owner_id_of(d)) and owner not in present}
            names = self.orgs.qlik_names
            others = await names.users(set(maybe.values())) if names is not None and maybe else {}
            # An owner id the Qlik tenant knows as someone else is theirs (same id), whatever their status.
            maybe = {i: o for i, o in maybe.items() if not _known(others.get(o))}
            if maybe:
                notes.append(
                    f"{user_label(person)} is not a user of Qalyptus organization {org}; {len(maybe)} of its tasks "
                    "have an owner who no longer is, and could be theirs (not selected; name them by id): "
                    + ", ".join(list(maybe)[:10])
                )
        return {person.id}

    @staticmethod
    async def _users(
        client: QalyptusClient, org: str, notes: list[str], budget: Budget | None = None
    ) -> list[dict[str, Any]] | None:
        """The organization's users (GET /users); None, said in `notes`, when they cannot be read."""
        if budget is not None and not budget.spend(scan_now(), f"Qalyptus users of {org}"):
            return None
        try:
            return await client.users()
        except ApiError as exc:
            notes.append(f"Qalyptus organization {org}'s users could not be read (HTTP {exc.status})")
            return None

    async def _qlik_user(self, user_id: str) -> UserName:
        """The Qlik user, for their e-mail; their id alone when the Qlik tenant cannot say."""
        names = self.orgs.qlik_names
        return (await names.users([user_id]))[user_id] if names is not None else UserName(user_id, "", read=False)

    async def handover(self, tasks: list[TaskInfo], owner_id: str) -> Handover:
        """Each task to the user of its organization matched to Qlik user `owner_id` (delivery.matched_user); an
        organization where none is, or whose users cannot be read, keeps its tasks, saying why. Each organization's
        tasks and users are read once."""
        person = await self._qlik_user(owner_id)
        wanted = {t.id: t for t in tasks}
        given = Handover()
        unreadable: list[str] = []
        for name in self.orgs.names:
            if not wanted:
                break
            client = self.orgs.get(name)
            try:
                docs = {d.id: d for d in await client.tasks() if d.id in wanted}
            except ApiError as exc:
                unreadable.append(f"Qalyptus organization {name}'s tasks could not be read (HTTP {exc.status})")
                continue
            if not docs:
                continue
            infos = [wanted.pop(task_id) for task_id in docs]
            owners = sorted((task_id, owner_id_of(doc) or "") for task_id, doc in docs.items())
            unread: list[str] = []
            users = await self._users(client, name, unread)
            new = delivery.matched_user(users, person.id, person.email) if users is not None else None
            given.state.append((name, str(new["id"]) if new else None, owners))
            if new is None:
                why = (
                    f"{unread[0]}, so which of its users is {user_label(person)} is not known"
                    if unread
                    else f"{user_label(person)} is not a user of Qalyptus organization {name} ("
                    + (
                        "none has their id or e-mail)"
                        if person.email
                        else "none has their id; their e-mail is not known)"
                    )
                )
                given.notes.append(f"{len(infos)} Qalyptus tasks left as they are: {why}: {_listed(infos)}")
                continue
            new_id = str(new["id"])
            mine = {i.id for i in infos if owner_id_of(docs[i.id]) == new_id}
            given.already += [i for i in infos if i.id in mine]
            given.todo += [(i, new_id) for i in infos if i.id not in mine]
            if len(mine) < len(infos):
                given.notes.append(f"In Qalyptus organization {name} the new owner is {delivery.user_label(new)}.")
        if wanted:
            where = "; ".join(unreadable) or "they are in no organization now"
            given.notes.append(f"{len(wanted)} Qalyptus tasks left as they are: {where}: {_listed(wanted.values())}")
        return given

    async def change_owner(self, info: TaskInfo, owner_id: str) -> None:
        """`owner_id`: the user of the task's organization that `handover` matched to the new owner."""
        client, _ = await self._find(info.id)
        await client.change_owner(info.id, owner_id)

    async def set_enabled(self, info: TaskInfo, enabled: bool) -> None:
        client, doc = await self._find(info.id)
        body = doc.update_body()
        body["isActive"] = enabled
        await client.update_task(info.id, body)

    async def delete(self, info: TaskInfo) -> None:
        client, _ = await self._find(info.id)
        await client.delete_task(info.id)

    async def failures(self, scan: FailureScan) -> None:
        """Every failed execution since `scan.since`, scheduled and on demand; the newest of each task (or report)
        gets its log's first error line."""
        read = 0
        for name in self.orgs.names:
            client = self.orgs.get(name)
            if not scan.budget.spend(scan.clock(), f"Qalyptus statuses of {name}"):
                continue
            statuses = await client.statuses()
            read += len(statuses)
            logged: set[str] = set()
            for run in sorted(statuses, key=lambda r: r.sort_time, reverse=True):
                if run.task_id and self._failed_since(run, scan):
                    newest = run.task_id not in logged
                    logged.add(run.task_id)
                    scan.found.append(await self._failure(client, run, scan, with_log=newest))
            read += await self._request_failures(client, name, scan)
        scan.checked["qalyptus"] = read

    async def _request_failures(self, client: QalyptusClient, org: str, scan: FailureScan) -> int:
        """Failed on-demand requests, grouped by report; those the tenant cannot list are named, not hidden."""
        if not scan.budget.spend(scan.clock(), f"Qalyptus on-demand requests of {org}"):
            return 0
        try:
            requests = await client.requests()
        except ApiError as exc:
            scan.budget.skipped.append(f"Qalyptus on-demand requests of {org} (HTTP {exc.status})")
            return 0
        logged: set[str] = set()
        for run in sorted(requests, key=lambda r: r.sort_time, reverse=True):
            if not self._failed_since(run, scan):
                continue
            report = run.report_id or run.id or ""
            failure = Failure(
                kind="qalyptus",
                task_id=report,
                name=f"on-demand {text_of(run.report_name) or report}"
                + (f" as {run.output_format}" if run.output_format else ""),
                app_id=None,
                at=text_of(run.ended_at or run.started_at),
                ref=text_of(run.id),
            )
            if report not in logged and run.id and scan.budget.spend(scan.clock(), f"Qalyptus log of request {run.id}"):
                try:
                    failure.error = (await client.stream_log(run.id, FirstErrorLine(), request=True)).line
                except ApiError as exc:
                    failure.error = f"(log not readable: HTTP {exc.status})"
            logged.add(report)
            scan.found.append(failure)
        return len(requests)

    @staticmethod
    def _failed_since(run: StatusDoc, scan: FailureScan) -> bool:
        when = parse_time(run.ended_at or run.started_at or run.created_at)
        return when is not None and when >= scan.since and classify(run.status) == "failure"

    @staticmethod
    async def _failure(client: QalyptusClient, run: StatusDoc, scan: FailureScan, *, with_log: bool) -> Failure:
        task_id = run.task_id or ""
        failure = Failure(
            kind="qalyptus",
            task_id=task_id,
            name=text_of(run.task_name) or task_id,
            app_id=None,
            at=text_of(run.ended_at or run.started_at),
            ref=text_of(run.id),
        )
        if with_log and scan.budget.spend(scan.clock(), f"Qalyptus log of task {task_id}"):
            try:
                failure.error = (await client.stream_log(task_id, FirstErrorLine())).line
            except ApiError as exc:
                failure.error = f"(log not readable: HTTP {exc.status})"
        return failure

    async def schedules_of(self, infos: list[TaskInfo], budget: Budget) -> dict[str, list[Schedule]]:
        """Every active time schedule of each task (its schedule triggers, each with its own start, zone and end;
        a Qlik event is no time), read whole: one request per task, and, with several organizations, one per
        organization to find which holds it. A task left out was not read; the budget names those it stopped."""
        wanted = {i.id for i in infos}
        found: dict[str, list[Schedule]] = {}
        several = len(self.orgs.names) > 1
        for name in self.orgs.names:
            client = self.orgs.get(name)
            if not wanted or (several and not budget.spend(scan_now(), f"Qalyptus tasks of {name}")):
                continue
            try:
                mine = sorted(wanted & {doc.id for doc in await client.tasks()} if several else wanted)
            except ApiError as exc:
                budget.skipped.append(f"Qalyptus tasks of {name} (HTTP {exc.status}): their schedules")
                continue
            wanted -= set(mine)

            async def one(task_id: str, client: QalyptusClient = client) -> None:
                if not budget.spend(scan_now(), f"schedules of Qalyptus task {task_id}"):
                    return
                try:
                    triggers = await client.triggers(task_id)
                except ApiError as exc:
                    budget.skipped.append(f"schedules of Qalyptus task {task_id} (HTTP {exc.status})")
                    return
                found[task_id] = self.time_schedules(triggers)

            await gather(mine, one)
        return found

    async def runs_of(
        self, infos: list[TaskInfo], since: datetime, budget: Budget
    ) -> dict[str, list[tuple[datetime, str]]]:
        """(start, status) of each task's executions since `since`, from each organization's status list, read
        once. Whether that list holds every execution or each task's latest is not documented, so a task's runs
        count as read back to `since` only when the list shows one of its runs started before then, or shows none
        of its runs and itself reaches back before then (every entry naming its task and time); other tasks are
        left out. A run on demand, or one that failed, still ran."""
        wanted = {i.id for i in infos}
        runs: dict[str, list[tuple[datetime, str]]] = {}
        earlier: set[str] = set()
        doubtful: set[str] = set()
        # Every organization's list was read, names each entry's task and time, and reaches back before `since`.
        reaches = True
        for name in self.orgs.names:
            if not budget.spend(scan_now(), f"Qalyptus statuses of {name}"):
                reaches = False
                continue
            try:
                statuses = await self.orgs.get(name).statuses()
            except ApiError as exc:
                budget.skipped.append(f"Qalyptus statuses of {name} (HTTP {exc.status})")
                reaches = False
                continue
            oldest: datetime | None = None
            zoneless = 0
            for run in statuses:
                at = _stated_time(run.sort_time)
                if at is None or not run.task_id:
                    # A time without a zone may be the organization's wall clock: read as UTC, it would move runs.
                    zoneless += parse_time(run.sort_time) is not None
                    reaches = False
                    doubtful |= {run.task_id} if run.task_id else set()
                    continue
                oldest = at if oldest is None else min(oldest, at)
                if run.task_id in wanted:
                    if at < since:
                        earlier.add(run.task_id)
                    else:
                        runs.setdefault(run.task_id, []).append((at, run.status))
            reaches = reaches and oldest is not None and oldest < since
            if zoneless:
                budget.notes.append(
                    f"Qalyptus organization {name} gave {zoneless} run times without a time zone: the tasks they "
                    "name were not compared."
                )
        read = {t for t in wanted - doubtful if t in earlier or (t not in runs and reaches)}
        return {task: sorted(runs.get(task, [])) for task in read}


# A date-time that says where it is: ends in Z or an offset (+01:00, -0500).
_ZONED = re.compile(r"(?:[zZ]|[+-]\d{2}:?\d{2})$")


def _stated_time(value: str | None) -> datetime | None:
    """A run's time when it states its zone; None for one that does not (or cannot be read)."""
    return parse_time(value) if value and _ZONED.search(value.strip()) else None


def _known(user: UserName | None) -> bool:
    return user is not None and user.read and user.status not in ("", UNSEEN)


def _listed(infos: Iterable[TaskInfo]) -> str:
    ids = [i.id for i in infos]
    return ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
