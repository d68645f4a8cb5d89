"""A simulated Qlik Cloud (and, later, Qalyptus) tenant: an ASGI app that answers as the specs say."""

from qlik_tasks_mcp.sandbox.app import build_sandbox
from qlik_tasks_mcp.sandbox.core import SANDBOX_API_KEY, SANDBOX_URL, Sandbox

__all__ = ["SANDBOX_API_KEY", "SANDBOX_URL", "Sandbox", "build_sandbox"]
