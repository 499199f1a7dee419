"""The Django admin: one module per model family, each calling the services for anything that must be forwarded."""

from django.contrib import admin

from connections.admin import audience, connection, delivery, erasure, inbound, profile

__all__ = ["audience", "connection", "delivery", "erasure", "inbound", "profile"]

admin.site.site_header = "cioaudience"
admin.site.site_title = "cioaudience"
admin.site.index_title = "Customer.io audience forwarding"
