"""Qlik's published OpenAPI specs and the Qalyptus notes, vendored as data: the client and the sandbox each read
them on their own (neither imports the other), and the tests validate every request and answer against them."""

from pathlib import Path

QLIK = Path(__file__).parent / "qlik"
QALYPTUS = Path(__file__).parent / "qalyptus"
