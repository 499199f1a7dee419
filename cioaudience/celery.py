"""The Celery app `cioaudience` (`celery -A cioaudience worker`, `celery -A cioaudience beat`)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cioaudience.settings")

app = Celery("cioaudience")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
