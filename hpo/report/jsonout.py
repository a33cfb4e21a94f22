"""JSON as strict parsers read it: NaN and infinities become null.

Python's `json` writes bare `NaN` and `Infinity`, which jq, JavaScript and most other
parsers reject; a trial's learning curve or a user attr may well hold one.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(data: Any) -> Any:
    """`data` with every non-finite float, however deeply nested, replaced by None."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(value) for value in data]
    return data


def dumps(data: Any) -> str:
    """Indented strict JSON; values JSON has no type for (dates, paths) become strings."""
    return json.dumps(finite(data), indent=2, default=str, allow_nan=False)
