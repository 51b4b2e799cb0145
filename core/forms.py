"""Parsed-form caches: queries and pull patterns are parsed once per distinct form.

Forms arrive as EDN text or as Python data. Text is its own cache key; Python data is frozen into a
hashable key that keeps lists, tuples, dicts and sets apart (``[1]`` and ``(1,)`` are different
forms). A form that cannot be frozen (it holds an unhashable value) is parsed every time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any


def freeze_form(x: Any) -> Any:
    """A hashable key for the Python-data form ``x``; ``TypeError`` if it holds unhashable values."""
    t = type(x)
    if t is str:
        return x
    if t is list:
        return ("[", *map(freeze_form, x))
    if t is tuple:
        return ("(", *map(freeze_form, x))
    if t is dict:
        return ("{", *((freeze_form(k), freeze_form(v)) for k, v in x.items()))
    if t is set or t is frozenset:
        return ("#", frozenset(map(freeze_form, x)))
    hash(x)
    return (t, x)


class FormCache:
    """A least-recently-used cache of parsed forms, keyed by text or frozen data (plus a context)."""

    def __init__(self, size: int):
        self.size = size
        self._entries: OrderedDict[Any, Any] = OrderedDict()

    def get_or_parse(self, form: Any, parse: Callable[[Any, bool], Any], context: Any = None) -> Any:
        """The cached parse of ``form`` in ``context``, or ``parse(form, is_text)`` remembered."""
        text = type(form) is str
        try:
            key = (form if text else freeze_form(form), context)
        except TypeError:
            return parse(form, text)
        entries = self._entries
        hit = entries.get(key)
        if hit is not None:
            entries.move_to_end(key)
            return hit
        value = parse(form, text)
        entries[key] = value
        if len(entries) > self.size:
            entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()
