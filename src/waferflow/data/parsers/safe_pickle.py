"""Read a pickled pandas DataFrame without running code from the file.

A pickle names the callables that rebuild its objects, and an ordinary ``pickle.load`` calls
whatever it names (``os.system`` included). :func:`load_frame` resolves names through an
allow-list instead: numpy arrays and dtypes, the pandas frame, index and block-manager classes
a DataFrame of arrays is rebuilt from (as written by pandas 0.x on Python 2 — WM-811K's original
``LSWMD.pkl`` — up to today's pandas), and a few harmless builtins. Any other name refuses the
file before that name is imported. Old pandas module paths are mapped as ``pandas.read_pickle``
maps them (``pandas.compat.pickle_compat``), and Python 2 pickles are decoded as latin-1 as it does.

Example:
    >>> from waferflow.data.parsers.safe_pickle import load_frame
    >>> frame = load_frame("data/raw/LSWMD.pkl")  # doctest: +SKIP
"""

from __future__ import annotations

import _compat_pickle
import pickle
from pathlib import Path
from typing import Any

from pandas.compat import pickle_compat

__all__ = ["load_frame", "PickleRefused", "ALLOWED"]

ALLOWED = frozenset(
    {
        # numpy arrays, dtypes and scalars (both the numpy 1 and numpy 2 module paths)
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        # pandas frames, series, indexes and their block managers
        ("pandas.core.frame", "DataFrame"),
        ("pandas.core.series", "Series"),
        ("pandas.core.internals", "BlockManager"),
        ("pandas.core.internals", "SingleBlockManager"),
        ("pandas.core.internals.managers", "BlockManager"),
        ("pandas.core.internals.managers", "SingleBlockManager"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas._libs.internals", "BlockPlacement"),
        ("pandas.core.indexes.base", "Index"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.indexes.range", "RangeIndex"),
        ("pandas.core.indexes.multi", "MultiIndex"),
        ("pandas.core.indexes.frozen", "FrozenList"),
        ("pandas.core.indexes.datetimes", "DatetimeIndex"),
        ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"),
        ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
        ("pandas._libs.tslibs.nattype", "__nat_unpickle"),
        ("pandas.core.arrays", "Categorical"),
        ("pandas.core.arrays.categorical", "Categorical"),
        ("pandas.core.dtypes.dtypes", "CategoricalDtype"),
        # builtins that protocol 0-2 pickles (and Python 2's) use to rebuild plain values
        *(
            ("builtins", name)
            for name in (
                "slice",
                "object",
                "bytes",
                "bytearray",
                "str",
                "int",
                "float",
                "complex",
                "bool",
                "list",
                "tuple",
                "dict",
                "set",
                "frozenset",
                "range",
            )
        ),
        ("copyreg", "_reconstructor"),
        ("_codecs", "encode"),
    }
)


class PickleRefused(pickle.UnpicklingError):
    """The pickle names something outside :data:`ALLOWED`; it was not imported or called."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(
            f"the pickle calls {module}.{name}, which a table of wafer maps does not need; "
            f"refused without running it (only numpy arrays and pandas frames are read from pickles)"
        )
        self.module, self.name = module, name


def _allowed(module: str, name: str) -> tuple[str, str]:
    """The (module, name) a pickle's reference resolves to, or :class:`PickleRefused`."""
    if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    module, name = pickle_compat._class_locations_map.get((module, name), (module, name))
    if (module, name) not in ALLOWED:
        raise PickleRefused(module, name)
    return module, name


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(*_allowed(module, name))


class _RestrictedCompat(pickle_compat.Unpickler):
    """pandas' pure-Python unpickler (it also patches how old index and block objects are
    rebuilt), with the same allow-list."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(*_allowed(module, name))


def load_frame(path: str | Path) -> Any:
    """Unpickle ``path`` with the allow-list; raises :class:`PickleRefused` on anything else.

    Tries the fast C unpickler first and pandas' compat unpickler where that fails on an old
    pandas object (the order ``pandas.read_pickle`` uses)."""
    with open(path, "rb") as fh:
        try:
            try:
                return _Restricted(fh).load()
            except PickleRefused:
                raise
            except (AttributeError, ImportError, TypeError):
                fh.seek(0)
                return _RestrictedCompat(fh).load()
        except UnicodeDecodeError:  # Python 2 str pickled as bytes
            fh.seek(0)
            return _RestrictedCompat(fh, encoding="latin-1").load()
