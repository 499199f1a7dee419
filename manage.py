#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cioaudience.settings")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        settings.INSTALLED_APPS  # noqa: B018 - loads the settings now
    except ImproperlyConfigured as exc:
        # Django would defer this for some commands (makemigrations) and then fail with
        # "Models aren't loaded yet", hiding which setting is missing.
        sys.exit(f"{exc}\nSettings come from the environment or .env (see .env.example); DEBUG=1 for development.")
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
