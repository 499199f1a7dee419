"""The Celery app `cioaudience` (`celery -A cioaudience worker`, `celery -A cioaudience beat`)."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cioaudience.settings")

app = Celery("cioaudience")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def close_old_connections(task=None, **kwargs) -> None:  # type: ignore[no-untyped-def]
    """Around each task, what Django does around each request: keep a database connection for
    CONN_MAX_AGE, health-checked before its first use, closed when broken or in error.

    Celery's own Django fix-up would close every connection before and after every task (a new
    PostgreSQL connection per task); settings.CELERY_DB_REUSE_MAX turns that off in favour of this.
    """
    if task is not None and getattr(task.request, "is_eager", False):
        return  # inside the caller's request or transaction: Django manages that connection
    from django.db import close_old_connections as close_if_unusable_or_obsolete

    close_if_unusable_or_obsolete()
