"""The Celery app (periodic reconciliation in the multi-instance deployment).

Start a worker with `celery -A quantmesh worker` and the scheduler with `celery -A quantmesh beat`.
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantmesh.settings")

app = Celery("quantmesh")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_configure.connect
def setup_periodic_tasks(sender, **kwargs):
    from reconciliation.tasks import BEAT_SCHEDULE

    sender.conf.beat_schedule = {**BEAT_SCHEDULE, **(sender.conf.beat_schedule or {})}
