"""The directory: apps and users found by a fragment of their name, so an admin's words lead to ids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from qlik_tasks_mcp.client.directory import DirectoryApi, ItemDoc, SpaceDoc, UserDoc, any_of, filter_value
from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.tools.fence import one_line, quoted, tenant_text_note
from qlik_tasks_mcp.tools.inventory import Deps
from qlik_tasks_mcp.tools.model import Compact
from qlik_tasks_mcp.tools.names import Names, row_names
from qlik_tasks_mcp.tools.operation import read
from qlik_tasks_mcp.tools.params import Cursor, Limit

Fragment = Annotated[str, Field(min_length=1, max_length=100, description="Part of the name, any case.")]
Status = Literal["active", "disabled", "deleted", "invited", "provisioned"]
NEXT = "Pass as cursor for more; absent on the last page."


@dataclass
class Directory:
    api: DirectoryApi
    names: Names


def service(clients: Deps) -> Directory:
    return Directory(DirectoryApi(clients.qlik), clients.names)


class AppRow(Compact):
    id: str = Field(description="App id (what task tools take as app_id).")
    name: str
    space: str | None = Field(None, description="Space name; absent for a personal space.")
    owner: str | None = None
    owner_id: str | None = None
    last_reload: str | None = None
    last_reload_status: str | None = None


class AppPage(Compact):
    apps: list[AppRow]
    next_cursor: str | None = Field(None, description=NEXT)
    note: str | None = None


class UserRow(Compact):
    id: str
    name: str
    email: str | None = None
    status: str | None = None


class UserPage(Compact):
    users: list[UserRow]
    next_cursor: str | None = Field(None, description=NEXT)
    note: str | None = None


async def _space_of(api: DirectoryApi, space: str) -> SpaceDoc:
    """The space named `space`: its exact name (any case), else the one space whose name contains it."""
    found = (await api.spaces(name=space, limit=100)).items
    wanted = space.casefold()
    exact = [s for s in found if s.name.casefold() == wanted]
    matches = exact or [s for s in found if wanted in s.name.casefold()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise InvalidInput(f"no space named like {quoted(space)}; leave space out to search every space")
    shown = ", ".join(quoted(s.name, 60) for s in matches[:10])
    raise InvalidInput(f"{len(matches)} spaces match {quoted(space)}: {shown}; give the full name")


async def _app_rows(names: Names, items: list[ItemDoc]) -> list[AppRow]:
    spaces = await names.spaces(i.space_id for i in items)
    owners = await row_names(names, [], [i.owner_id for i in items])
    return [
        AppRow(
            id=item.resource_id,
            name=one_line(item.name),
            space=one_line(spaces[item.space_id]) if item.space_id in spaces else None,
            owner=owners.user(item.owner_id),
            owner_id=item.owner_id or None,
            last_reload=item.resource_reload_end_time or None,
            last_reload_status=item.resource_reload_status or None,
        )
        for item in items
    ]


@read("Find apps")
async def find_apps(
    directory: Directory,
    name: Fragment,
    space: Annotated[str | None, Field(max_length=100, description="Space name, or part of it.")] = None,
    exact: Annotated[bool, Field(description="True: the whole name (any case), not a part.")] = False,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> AppPage:
    """Apps whose name contains a fragment (any case): app id, name, space, owner, last reload."""
    space_id = (await _space_of(directory.api, space)).id if space and not cursor else None
    # The items spec: `name` is a whole name, `query` a part of the name or the description. So a fragment goes
    # as `query`, and apps it matched only by their description are dropped here.
    search = {"name": name} if exact else {"query": name}
    page = await directory.api.apps(**search, space_id=space_id, limit=limit, cursor=cursor)
    wanted = name.casefold()
    items = [
        i
        for i in page.items
        if i.resource_id and (i.name.casefold() == wanted if exact else wanted in i.name.casefold())
    ]
    notes = [tenant_text_note(["name", "space", "owner"]), page.cut_note]
    if len(items) < len(page.items):
        notes.append(f"{len(page.items) - len(items)} apps matched by their description only were left out.")
    if not items and not page.next_cursor:
        where = " in that space" if space else ""
        notes.append(f"No app this API key can see has a name {'equal to' if exact else 'containing'} it{where}.")
    return AppPage(
        apps=await _app_rows(directory.names, items),
        next_cursor=page.next_cursor,
        note=" ".join(n for n in notes if n),
    )


def _users_filter(text: str, status: list[Status] | None) -> str:
    fields = ("email",) if "@" in text else ("name", "email")
    matching = "(" + " or ".join(f"{f} co {filter_value(text, 'text')}" for f in fields) + ")"
    # The filter language wants status conditions grouped, and they apply to the whole query.
    return matching + (f" and {any_of('status', 'eq', list(status))}" if status else "")


def _user_row(doc: UserDoc) -> UserRow:
    return UserRow(id=doc.id, name=one_line(doc.name), email=one_line(doc.email) or None, status=doc.status or None)


@read("Find users")
async def find_users(
    directory: Directory,
    text: Annotated[str, Field(min_length=1, max_length=100, description="Part of the name or e-mail, any case.")],
    status: Annotated[list[Status] | None, Field(max_length=5)] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> UserPage:
    """Users whose name or e-mail contains a fragment: id, name, e-mail, status."""
    filter_text = None if cursor else _users_filter(text, status)
    page = await directory.api.users(filter_text=filter_text, limit=limit, cursor=cursor)
    notes = [tenant_text_note(["name", "email"]), page.cut_note]
    if not page.items:
        notes.append("Nobody matches; try part of the surname or of the e-mail address.")
    return UserPage(
        users=[_user_row(u) for u in page.items], next_cursor=page.next_cursor, note=" ".join(n for n in notes if n)
    )
