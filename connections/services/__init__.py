"""The business logic, in packages by capability; each imports only itself and those above it here.

outbox -> connection -> erasure -> forwarding -> resync -> ingest -> imports, visibility
(docs/architecture.md draws the map; tests/test_architecture.py holds it.)
"""
