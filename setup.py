"""Build of the compiled box kernel; everything else about the package is in pyproject.toml.

The kernel is optional at build time: without a C compiler the package installs without it
and ``camkit.boxes`` falls back to one contour search per level (same boxes, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "camkit.boxes._union_find",
            sources=["camkit/boxes/_union_find.c"],
            optional=True,
        )
    ]
)
