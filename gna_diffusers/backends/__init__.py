"""Backends behind one registry; importing this package registers the built-in ones."""

from . import cutlass, flex, reference  # noqa: F401  (registers the built-in backends)
from ..ops.inputs import GNAInputs
from .registry import Backend, available_backends, register_backend, select_backend

__all__ = ["Backend", "GNAInputs", "available_backends", "register_backend", "select_backend"]
