"""What the reload rows and the ops tools' failed reloads both say: who started a reload."""

from qlik_tasks_mcp.client.reloads import ReloadDoc

# Who started a reload, from its type and the resource that asked for it (reloads.json enums).
STARTED_BY = {
    "tasks": "a task",
    "reload-tasks": "a reload task",
    "automate": "an automation",
    "api": "the API",
}
BY_TYPE = {
    "hub": "a user in the hub",
    "chronos": "a reload task",
    "choreographer": "a task",
    "automations": "an automation",
    "data-refresh": "a data refresh",
    "external": "the API",
}


def started_by(doc: ReloadDoc) -> str:
    who = STARTED_BY.get(doc.resource_type) or BY_TYPE.get(doc.type) or doc.type or "unknown"
    if doc.resource_id and doc.resource_type in ("tasks", "reload-tasks", "automate"):
        return f"{who} ({doc.resource_id})"
    return f"{who} ({doc.user_id})" if doc.type == "hub" and doc.user_id else who
