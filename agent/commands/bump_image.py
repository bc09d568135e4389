"""`pachsync bump-image IMAGE TAG`: the CI step that points the specs at a freshly pushed image.

Registered by `agent.cli`; the work is in `agent.bump` (rewrite, verify, orchestrate) and
`agent.source.push` (commit, push, replay on a lost race). Exit 0 when the specs run TAG
afterwards, or already name a newer commit; 2 on any error.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agent.util.safetext import json_dumps, one_line

HELP = "point every spec that runs IMAGE at TAG (optionally commit and push)"
DESCRIPTION = """\
Rewrite only the tag (or digest) on the `image:` lines whose repository equals IMAGE, in every
spec under --specs; every other byte stays as it was, and the result is re-parsed to prove that
only those image fields changed. Mutable tags (latest, empty) are refused. When the specs already
run TAG it does nothing and exits 0.

--commit makes one commit of exactly those files: "Bump IMAGE to TAG [skip ci]".
--push (implies --commit) pushes it without ever forcing; when the push is rejected because
someone pushed meanwhile, it fetches, replays the bump on the new head and retries with backoff.
When TAG is a commit sha and the specs already name a newer commit, nothing is written
(an older build never rolls back a newer one's bump; --allow-older overrides).
"""
EPILOG = """\
examples:
  pachsync bump-image myacr.azurecr.io/iris-stages 3f2c1ab9
  pachsync bump-image myacr.azurecr.io/iris-stages $(Build.SourceVersion) \\
      --commit --push --branch main --format json
author: --author-name/--author-email, else PACHSYNC_AUTHOR_NAME/PACHSYNC_AUTHOR_EMAIL,
else GIT_AUTHOR_NAME/GIT_AUTHOR_EMAIL, else git config user.name/user.email, else pachsync-bot.
exit codes: 0 done (changed, already at TAG, or skipped: the specs name a newer commit);
2 error (bad IMAGE/TAG, no spec names IMAGE, dirty spec files, push refused or retries spent).
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bump-image", help=HELP, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", metavar="IMAGE", help="repository without tag, e.g. acr.io/x")
    parser.add_argument("tag", metavar="TAG", help="immutable tag (commit sha) or sha256:<digest>")
    parser.add_argument("--specs", type=Path, default=Path("specs"),
                        help="folder of the specs to rewrite (default: specs)")
    parser.add_argument("--commit", action="store_true", help="commit the rewritten files")
    parser.add_argument("--push", action="store_true", help="push the commit (implies --commit)")
    parser.add_argument("--remote", default="origin", help="remote to push to (default: origin)")
    parser.add_argument("--branch", default=None,
                        help="branch to push to (default: the checked-out branch)")
    parser.add_argument("--retries", type=int, default=5,
                        help="push retries after a rejection (default: 5)")
    parser.add_argument("--backoff", type=float, default=1.0,
                        help="seconds before the first retry, doubled each time (default: 1)")
    parser.add_argument("--author-name", default=None, help="commit author name")
    parser.add_argument("--author-email", default=None, help="commit author email")
    parser.add_argument("--allow-older", action="store_true",
                        help="write TAG even if the specs already name a newer commit")
    parser.add_argument("--dry-run", action="store_true",
                        help="show what would change; write, commit and push nothing")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from agent.bump import BumpOptions, run_bump
    from agent.errors import UsageError

    if args.retries < 0:
        raise UsageError("--retries must be >= 0")
    outcome = run_bump(BumpOptions(
        specs_dir=args.specs, image=args.image, tag=args.tag, commit=args.commit or args.push,
        push=args.push, remote=args.remote, branch=args.branch, retries=args.retries,
        backoff_s=args.backoff, author_name=args.author_name, author_email=args.author_email,
        allow_older=args.allow_older, dry_run=args.dry_run,
    ))
    if args.format == "json":
        print(json_dumps(to_json(outcome), indent=2))
    else:
        print(to_text(outcome))
    return 0


def to_json(outcome: Any) -> dict[str, Any]:
    plan = outcome.plan
    return {
        "image": plan.image,
        "new_ref": plan.new_ref,
        "status": outcome.status,
        "files": [
            {"file": f.file, "changes": [{"line": c.line, "old": c.old, "new": c.new}
                                         for c in f.changes]}
            for f in plan.files
        ],
        "commit": outcome.commit,
        "pushed": outcome.pushed,
        "remote": outcome.remote,
        "branch": outcome.branch,
        "attempts": outcome.attempts,
        "replays": outcome.replays,
        "note": outcome.note,
    }


def to_text(outcome: Any) -> str:
    plan = outcome.plan
    lines = [f"bump-image {plan.image} -> {plan.new_ref}"]
    if outcome.status not in ("changed", "would-change"):
        lines.append(f"nothing to do ({outcome.status}): {outcome.note}")
        return "\n".join(one_line(line) for line in lines)
    for f in plan.files:
        for c in f.changes:
            lines.append(f"  {f.file}:{c.line}: {c.old} -> {c.new}")
    verb = "would change (dry run)" if outcome.status == "would-change" else "changed"
    lines.append(f"{len(plan.files)} file(s) {verb}")
    if outcome.pushed:
        lines.append(f"pushed {outcome.commit} to {outcome.remote}/{outcome.branch} "
                     f"({outcome.attempts} attempt(s), {outcome.replays} replay(s))")
    elif outcome.commit:
        lines.append(f"committed {outcome.commit} (not pushed)")
    return "\n".join(one_line(line) for line in lines)  # file names and tags come from git
