"""Reading a JSON document field by field, typed: each value is checked (never converted, so what is read
writes back the same), a missing one takes its default, and an error says where
(`combinations[0].metrics.accuracy: missing`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from app.evaluation.errors import EvaluationError

_REQUIRED: Any = object()


def _kind(value: object) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "true or false", type(None): "null"}
    return kinds.get(type(value), "a number")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_interval(value: object) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(_is_number(x) for x in value)


class JsonFields:
    """One JSON object, read field by field."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise EvaluationError(f"{where or 'the file'}: must be a JSON object, got {_kind(data)}")
        self.data: dict[str, Any] = data
        self.where = where

    def at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _get(self, key: str, default: Any, ok: Callable[[object], bool], what: str) -> Any:
        if key not in self.data:
            if default is _REQUIRED:
                raise EvaluationError(f"{self.at(key)}: missing")
            return default
        value = self.data[key]
        if not ok(value):
            raise EvaluationError(f"{self.at(key)}: must be {what}, got {_kind(value)}")
        return value

    def text(self, key: str, default: Any = _REQUIRED) -> str:
        value: str = self._get(key, default, lambda v: isinstance(v, str), "a string")
        return value

    def maybe_text(self, key: str) -> str | None:
        value: str | None = self._get(key, None, lambda v: v is None or isinstance(v, str), "a string or null")
        return value

    def whole(self, key: str, default: Any = _REQUIRED) -> int:
        value: int = self._get(key, default, _is_whole, "an integer")
        return value

    def maybe_whole(self, key: str) -> int | None:
        value: int | None = self._get(key, None, lambda v: v is None or _is_whole(v), "an integer or null")
        return value

    def number(self, key: str, default: Any = _REQUIRED) -> float:
        value: float = self._get(key, default, _is_number, "a number")
        return value

    def maybe_number(self, key: str) -> float | None:
        value: float | None = self._get(key, None, lambda v: v is None or _is_number(v), "a number or null")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value: bool = self._get(key, default, lambda v: isinstance(v, bool), "true or false")
        return value

    def texts(self, key: str) -> list[str]:
        value: list[str] = self._get(key, [], lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                                     "an array of strings")
        return value

    def counts(self, key: str) -> dict[str, int]:
        value: dict[str, int] = self._get(key, {}, lambda v: isinstance(v, dict) and all(
            _is_whole(x) for x in v.values()), "an object of integers")
        return value

    def as_counts(self) -> dict[str, int]:
        """This whole object, as counts by name."""
        for key, value in self.data.items():
            if not _is_whole(value):
                raise EvaluationError(f"{self.at(key)}: must be an integer, got {_kind(value)}")
        return self.data

    def interval(self, key: str) -> tuple[float, float] | None:
        value: list[float] | None = self._get(key, None, lambda v: v is None or _is_interval(v),
                                              "two numbers [low, high]")
        return None if value is None else (value[0], value[1])

    def fields(self, key: str) -> JsonFields | None:
        """A nested object; None when it is missing or null."""
        value = self.data.get(key)
        return None if value is None else JsonFields(value, self.at(key))

    def each(self, key: str) -> list[JsonFields]:
        """An array of objects (required); each read as a JsonFields."""
        value: list[Any] = self._get(key, _REQUIRED, lambda v: isinstance(v, list), "an array")
        return [JsonFields(item, f"{self.at(key)}[{i}]") for i, item in enumerate(value)]

    def each_or_none(self, key: str) -> list[JsonFields]:
        return self.each(key) if key in self.data else []

    def named(self, key: str) -> dict[str, JsonFields]:
        """An object of objects, by name (empty when missing)."""
        value: dict[str, Any] = self._get(key, {}, lambda v: isinstance(v, dict), "an object")
        return {name: JsonFields(item, f"{self.at(key)}.{name}") for name, item in value.items()}
