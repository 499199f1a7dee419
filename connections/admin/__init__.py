"""The Django admin: one module per model family, each calling the services for anything that must be forwarded."""

from connections.admin import audience, batch_delivery, connection, delivery, erasure, inbound, profile

__all__ = ["audience", "batch_delivery", "connection", "delivery", "erasure", "inbound", "profile"]
