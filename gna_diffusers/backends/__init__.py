"""Backends behind one registry; importing this package registers the built-in ones."""

from . import cutlass, flex, reference  # noqa: F401  (registers the built-in backends)
from .registry import Backend, GNAInputs, available_backends, register_backend, select_backend

__all__ = ["Backend", "GNAInputs", "available_backends", "register_backend", "select_backend"]
