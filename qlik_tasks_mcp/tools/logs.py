"""Reading long logs the same way everywhere: the tail by default, offset paging, or a bounded grep;
always saying which lines of how many were returned, and framing the text as untrusted tenant data."""

import re

from pydantic import Field

from qlik_tasks_mcp.client.errors import InvalidInput
from qlik_tasks_mcp.tools.fence import untrusted
from qlik_tasks_mcp.tools.model import Compact

GREP_MAX = 200
LINE_MAX = 500
# A repeated group holding a repetition or alternatives, e.g. (a+)+ or (a|aa)+: catastrophic backtracking's shape.
_NESTED_REPEAT = re.compile(r"\((?:[^()\\]|\\.)*[+*}|](?:[^()\\]|\\.)*\)[+*{]")


class RunLog(Compact):
    task_id: str
    run_id: str
    total_lines: int
    returned: str
    first_line: int | None = None
    last_line: int | None = None
    matches: int | None = None
    next_offset: int | None = Field(None, description="Pass as offset for the next lines.")
    log: str


def compile_grep(pattern: str) -> re.Pattern[str]:
    if len(pattern) > GREP_MAX:
        raise InvalidInput(f"grep is {len(pattern)} characters; at most {GREP_MAX} are accepted")
    if _NESTED_REPEAT.search(pattern):
        raise InvalidInput(
            f"grep {pattern[:60]!r} repeats a group that holds a repetition or alternatives (like (a+)+ or (a|b)+), "
            "which can run for very long; simplify it"
        )
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise InvalidInput(f"grep {pattern[:60]!r} is not a valid regular expression: {exc}") from None


def _clip(line: str) -> str:
    return line if len(line) <= LINE_MAX else line[:LINE_MAX] + " [line cut]"


def slice_log(
    task_id: str,
    run_id: str,
    text: str,
    *,
    lines: int,
    grep: str | None,
    offset: int | None,
    source: str = "run log",
) -> RunLog:
    """The tail (default), `lines` from `offset`, or the lines matching `grep`, saying what was returned.

    `source` names the log in its untrusted-content frame."""
    all_lines = text.splitlines()
    total = len(all_lines)
    next_offset: int | None = None
    if grep:
        pattern = compile_grep(grep)
        hits = [i for i, line in enumerate(all_lines) if pattern.search(line[: LINE_MAX * 4])]
        if offset is None:
            chosen = hits[-lines:]
            where = "the last " if len(hits) > lines else ""
        else:
            after = [i for i in hits if i >= offset]
            chosen = after[:lines]
            next_offset = chosen[-1] + 1 if len(after) > lines else None
            where = f"from line {offset + 1}: "
        body = "\n".join(f"{i + 1}: {_clip(all_lines[i])}" for i in chosen)
        returned = f"{where}{len(chosen)} of {len(hits)} lines matching /{grep}/i (prefixed with their line numbers)"
        return RunLog(
            task_id=task_id,
            run_id=run_id,
            total_lines=total,
            returned=returned,
            first_line=chosen[0] + 1 if chosen else None,
            last_line=chosen[-1] + 1 if chosen else None,
            matches=len(hits),
            next_offset=next_offset,
            log=untrusted(body, source),
        )
    if offset is None:
        start = max(0, total - lines)
        end = total
        how = "tail; pass offset to read from another line" if start > 0 else "whole log"
    else:
        start = min(offset, total)
        end = min(total, start + lines)
        next_offset = end if end < total else None
        how = "from offset"
    body = "\n".join(_clip(line) for line in all_lines[start:end])
    returned = f"lines {start + 1}-{end} of {total} ({how})" if end > start else f"no lines (the log has {total})"
    return RunLog(
        task_id=task_id,
        run_id=run_id,
        total_lines=total,
        returned=returned,
        first_line=start + 1 if end > start else None,
        last_line=end if end > start else None,
        next_offset=next_offset,
        log=untrusted(body, source),
    )
