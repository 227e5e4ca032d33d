"""The caches this project keeps in a process, and one reset for all of them.

Each cache is keyed so that it cannot serve stale content (a file's version, a font's size), so a
process never needs the reset to get correct numbers; it is for code that wants a process as fresh as a
new one: the tests between cases, a notebook between experiments. A new cache is added here.
"""

from src import idx, pictures, sweep


def clear() -> None:
    """Empty every cache: the idx files read (src/idx.py), the sweep records read (src/sweep.py) and
    the fonts loaded for pictures (src/pictures.py)."""
    idx.clear_cache()
    sweep.load_record.cache_clear()
    pictures.font.cache_clear()
