"""The ops answers that join runs across time (reload stats, missed runs) and the one-yes bulk changes (delete,
new owner), gathered for the one import line at the end of tools.py that makes them part of the ops toolset."""

from qlik_tasks_mcp.tools.ops.bulk import change_tasks_owner, delete_tasks
from qlik_tasks_mcp.tools.ops.missed import find_missed_runs
from qlik_tasks_mcp.tools.ops.stats import get_reload_stats

# The catalogue's order: the two answers, then the bulk changes after set_tasks_enabled's kin.
__all__ = ["get_reload_stats", "find_missed_runs", "delete_tasks", "change_tasks_owner"]  # noqa: RUF022
