"""QuantMesh: grid trading on crypto exchanges, with a Django admin."""
from quantmesh.celery import app as celery_app
from quantmesh.version import __version__

__all__ = ["__version__", "celery_app"]
