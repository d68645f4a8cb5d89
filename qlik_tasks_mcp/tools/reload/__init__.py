"""The reload toolset: its operations (tools.py) and what they alone use."""
