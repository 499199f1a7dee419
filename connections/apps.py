from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "connections"
    verbose_name = "Customer.io audiences"

    def ready(self) -> None:
        from connections import (
            lookups,  # noqa: F401 - registers the `__any` lookup
            secret_key,  # noqa: F401 - registers its deployment check
            signals,  # noqa: F401 - connects the receivers
        )
