"""Frozen records: what `@dataclass(frozen=True)` gives, without importing dataclasses.

`import dataclasses` pulls in `inspect` and costs about 15 ms on these machines; the
generator runs at every boot and daemon-reload and the launcher on every container start,
so their data types are built with this decorator instead. mypy treats it exactly like a
frozen dataclass (PEP 681), so the type checking is the same.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar, dataclass_transform

    T = TypeVar("T")
else:

    def dataclass_transform(**_: object) -> object:
        return lambda f: f


class FrozenInstanceError(AttributeError):
    pass


@dataclass_transform(frozen_default=True)
def record(cls: type[T]) -> type[T]:
    """Fields are the class's annotations in order; a class attribute is the default."""
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        for name in klass.__dict__.get("__annotations__", {}):
            if name not in names:
                names.append(name)
    fields = tuple(names)
    defaults = {n: getattr(cls, n) for n in fields if hasattr(cls, n)}

    # Generated like dataclasses does it: a plain __init__ is several times faster than a
    # generic one, and the generator builds thousands of records per run.
    params = ", ".join(f"{n}=_defaults[{n!r}]" if n in defaults else n for n in fields)
    # straight into the instance dict: __setattr__ is the frozen guard
    body = "    values = self.__dict__\n" + "".join(f"    values[{n!r}] = {n}\n" for n in fields)
    namespace: dict[str, Any] = {"_defaults": defaults}
    exec(f"def __init__(self, {params}):\n{body}", namespace)
    __init__ = namespace["__init__"]
    __init__.__qualname__ = f"{cls.__qualname__}.__init__"

    def astuple(self: Any) -> tuple[Any, ...]:
        return tuple(getattr(self, n) for n in fields)

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return astuple(self) == astuple(other)

    def __hash__(self: Any) -> int:
        return hash(astuple(self))

    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in fields)
        return f"{cls.__name__}({shown})"

    def __setattr__(self: Any, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self: Any, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    for function in (__init__, __eq__, __hash__, __repr__, __setattr__, __delattr__):
        setattr(cls, function.__name__, function)
    cls.__record_fields__ = fields  # type: ignore[attr-defined]
    return cls


def fields_of(obj: object) -> tuple[str, ...]:
    return obj.__record_fields__  # type: ignore[attr-defined]


def replace(obj: T, **changes: Any) -> T:
    values = {n: getattr(obj, n) for n in fields_of(obj)}
    values.update(changes)
    return obj.__class__(**values)
