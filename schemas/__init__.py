"""Tidemark's canonical, versioned data model. A published version is never mutated: add V2 instead."""

from schemas import v1
from schemas.v1 import *  # noqa: F403 - the current version's models are the package's public names

__all__ = v1.__all__
