"""Backends behind one registry; importing this package registers the built-in ones."""

from . import reference  # noqa: F401  (registers 'reference')
from .registry import Backend, GNAInputs, available_backends, register_backend, select_backend

__all__ = ["Backend", "GNAInputs", "available_backends", "register_backend", "select_backend"]
