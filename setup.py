"""Builds ferry's optional C extensions: the compiled row-image decoder (selector/_rowimage.pyx)
and the compiled hot path of binlog reading (selector/_binlog.pyx).

Everything else about the distribution is in pyproject.toml. The extensions are
optional: without Cython or a C compiler the install still succeeds, ``selector.values``
uses its pure-Python decoder (slower; it logs one line saying so) and ``selector.stream``
its pure-Python hot path.
"""

from __future__ import annotations

import sys
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing when the extension cannot be compiled."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no headers, ...
            _skipped(exc)

    def build_extension(self, ext: Any) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            _skipped(exc)


def _skipped(exc: BaseException) -> None:
    print(
        f"WARNING: ferry's compiled row decoder was not built ({exc}); ferry will use the"
        " pure-Python decoder, which is slower",
        file=sys.stderr,
    )


def _extensions() -> list[Any]:
    try:
        from Cython.Build import cythonize
    except ImportError as exc:
        _skipped(exc)
        return []
    try:
        return cythonize(
            ["selector/_rowimage.pyx", "selector/_binlog.pyx"],
            compiler_directives={"language_level": "3"},
            quiet=True,
        )
    except Exception as exc:
        _skipped(exc)
        return []


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
