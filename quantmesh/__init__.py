"""QuantMesh: grid trading on crypto exchanges, with a Django admin."""
from quantmesh.version import __version__

__all__ = ["__version__"]
