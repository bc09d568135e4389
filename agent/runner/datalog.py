"""What a sync wrote of the data declared in git, for the agent's log line.

Called by `agent.runner.loop._log_run`. Reads the data section of the run's plan (SyncResult.plan
["data"], agent.plan.datarender.to_dict): repos written and their files per action. Pure.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

WRITTEN = ("applied", "partial")  # results after which the planned data writes happened


def data_written(result: Any) -> dict[str, dict[str, int]]:
    """repo -> {action: files} for every repo this run wrote data to ({} if none)."""
    if getattr(result, "result", "") not in WRITTEN:
        return {}
    plan = getattr(result, "plan", None)
    data = plan.get("data") if isinstance(plan, dict) else None
    repos = data.get("repos") if isinstance(data, dict) else None
    out: dict[str, dict[str, int]] = {}
    for repo in repos if isinstance(repos, list) else []:
        if isinstance(repo, dict) and repo.get("write"):
            actions = Counter(str(c.get("action")) for c in repo.get("changes") or [])
            out[str(repo.get("repo"))] = dict(sorted(actions.items()))
    return out


def describe_data(written: dict[str, dict[str, int]]) -> str:
    """`; data parameters (add 1), raw_data (change 1)` for the log message ("" if none)."""
    if not written:
        return ""
    parts = [f"{repo} ({', '.join(f'{a} {n}' for a, n in actions.items()) or 'finished'})"
             for repo, actions in written.items()]
    return "; data " + ", ".join(parts)
