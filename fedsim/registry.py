"""One small registry type shared by every pluggable family (datasets, extractors, ...).

Names map to factories; unknown names fail with the list of what is allowed, so no
module needs an if/elif chain over method names.
"""

from __future__ import annotations

import inspect

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: factory parameters fedsim sets itself, never a user (not listed as allowed)
INTERNAL = ("seed", "key")


class Registry(Generic[T]):
    def __init__(self, family: str, internal: tuple[str, ...] = INTERNAL) -> None:
        """``internal``: factory parameters fedsim sets itself, left out of "allowed" lists."""
        self.family = family
        self.internal = internal
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.family} {name!r} is registered twice")
            self._factories[name] = factory
            return factory

        return decorate

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._factories[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.family} {name!r}; allowed: {', '.join(self._factories)}"
            ) from None

    def parameters(self, name: str) -> list[str] | None:
        """Keyword parameters the factory accepts (None when it takes ``**kwargs``)."""
        sig = inspect.signature(self.get(name))
        if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            return None
        return [n for n, p in sig.parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]

    def check_parameters(self, name: str, params: dict[str, Any]) -> None:
        """An unknown parameter is a ValueError naming the ones ``name`` takes."""
        allowed = self.parameters(name)
        if allowed is None:
            return
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            shown = [a for a in allowed if a not in self.internal]
            raise ValueError(
                f"unknown parameter {unknown[0]!r} for {self.family} {name!r}; "
                f"allowed: {', '.join(shown) if shown else 'none'}"
            )

    def create(self, name: str, **params: Any) -> T:
        """Build by name; an unknown parameter is a ValueError naming what is allowed."""
        self.check_parameters(name, params)
        return self.get(name)(**params)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)
