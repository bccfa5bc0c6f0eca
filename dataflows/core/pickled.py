"""Fast pickling for the slotted dataclasses the core keeps in its state, snapshots and sends between
workers.

A dataclass with slots pickles through dataclasses' own __getstate__, which calls `fields()` for every
instance: a fifth of the CPU of a customer key's snapshot (cProfile, 3,415 keys). `pickled_fast` gives the
class a __reduce__ that reads the slots with one attrgetter and rebuilds the instance through its own
__init__, cheaper to load than an empty object and a __setstate__ that sets the slots one by one (with
Step and Resolution slotted too, a sequencer message moved between workers took 25 instead of 29 us to
pickle and unpickle, 754 instead of 912 bytes: `bench core`'s workload, 20,000 messages). It keeps a
__setstate__ for what earlier versions wrote: the field values in field order (fast or dataclasses' own
pickling), or, for a class that had no slots then, its __dict__ (a field missing from it takes its
default, as the class attribute gave it then).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, Field, fields
from operator import attrgetter
from typing import Any, TypeVar

T = TypeVar("T")


def _default(f: Field[Any]) -> Callable[[], Any]:
    """What a field missing from an old state takes."""
    return f.default_factory if f.default_factory is not MISSING else lambda: f.default


def pickled_fast(cls: type[T]) -> type[T]:
    """Apply above @dataclass(slots=True); frozen or not. Every field must be an __init__ argument."""
    names = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    if not all(f.init for f in fields(cls)):  # type: ignore[arg-type]
        msg = f"{cls.__name__}: pickled_fast rebuilds through __init__, so every field must be one of its arguments"
        raise TypeError(msg)
    read = attrgetter(*names)
    one = len(names) == 1
    set_slot = object.__setattr__  # a frozen class refuses plain setattr
    defaults = {f.name: _default(f) for f in fields(cls)  # type: ignore[arg-type]
                if f.default is not MISSING or f.default_factory is not MISSING}  # fmt: skip

    def __reduce__(self: Any) -> tuple[type[T], tuple[Any, ...]]:
        return cls, (read(self),) if one else read(self)

    def __setstate__(self: Any, state: tuple[Any, ...] | list[Any] | dict[str, Any]) -> None:
        if isinstance(state, dict):  # without slots, a field added later read its class default
            state = [state[n] if n in state else defaults[n]() for n in names]
        for name, value in zip(names, state, strict=True):
            set_slot(self, name, value)

    cls.__reduce__ = __reduce__  # type: ignore[assignment]
    cls.__setstate__ = __setstate__  # type: ignore[attr-defined]
    return cls

