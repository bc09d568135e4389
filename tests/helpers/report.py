"""Reading what `pachsync report` wrote: the JSON data island embedded in report.html.

Used by tests/unit/test_report_render.py and tests/e2e/test_report_demo.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

ISLAND = re.compile(r'<script type="application/json" id="pachsync-report">(.*?)</script>', re.S)


def data_island(html: str) -> dict[str, Any]:
    """The page's JSON data island (the report's summary), parsed."""
    m = ISLAND.search(html)
    assert m, "the page has no JSON data island"
    return dict(json.loads(m.group(1)))
