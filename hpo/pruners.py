"""The old home of `DivergencePruner`, from before hpo's packages: code that imports it from
here still runs, with a warning that names its home now, `hpo.search.pruners`."""

from __future__ import annotations

import warnings

from hpo.search.pruners import DivergencePruner

__all__ = ["DivergencePruner"]

warnings.warn("hpo.pruners moved: import DivergencePruner from hpo.search.pruners",
              DeprecationWarning, stacklevel=2)
