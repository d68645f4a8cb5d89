"""A simulated Qlik Cloud and Qalyptus tenant: an ASGI app that answers as the specs say.

`build_sandbox` (sandbox/app.py) loads on first use, not with the package: a server importing the sandbox's
transport or addresses at start-up should not pay for every family's module, the seed data and jsonschema."""

from typing import TYPE_CHECKING, Any

from qlik_tasks_mcp.sandbox.core import SANDBOX_API_KEY, SANDBOX_URL, Sandbox

if TYPE_CHECKING:
    from qlik_tasks_mcp.sandbox.app import build_sandbox

__all__ = ["SANDBOX_API_KEY", "SANDBOX_URL", "Sandbox", "build_sandbox"]


def __getattr__(name: str) -> Any:
    if name == "build_sandbox":
        from qlik_tasks_mcp.sandbox.app import build_sandbox

        return build_sandbox
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
