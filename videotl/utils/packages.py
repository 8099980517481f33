"""What is installed: a package's version without importing it."""

from __future__ import annotations

import importlib.metadata
import sys
from typing import Optional

__all__ = ["package_version"]


def package_version(module: str) -> Optional[str]:
    """The version of the package that provides ``module``, without importing it when it is not
    loaded yet (importing torchvision or scikit-learn only to read a version costs seconds, and a
    package built for another torch fails to import at all)."""
    loaded = sys.modules.get(module)
    if loaded is not None and getattr(loaded, "__version__", None):
        return loaded.__version__
    for distribution in importlib.metadata.packages_distributions().get(module, ()):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None
