import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cioaudience.settings")

application = get_wsgi_application()

from connections import secret_key  # noqa: E402 - needs the apps loaded

secret_key.require()
