"""datsync.core: pure functions over immutable database values (no I/O, no clock, no randomness)."""

from .values import Datom, Keyword, Symbol, compare_values, kw, sym

__all__ = ["Datom", "Keyword", "Symbol", "compare_values", "kw", "sym"]
