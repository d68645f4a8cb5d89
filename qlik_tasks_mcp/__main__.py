"""`python -m qlik_tasks_mcp`: the same command line as `qlik-tasks-mcp`."""

import sys

from qlik_tasks_mcp.server.cli import main

sys.exit(main())
