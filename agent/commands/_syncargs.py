"""Options shared by `plan`, `apply` and `demo` (and `--pachd` by every command that connects):
where the specs come from, where pachd is.

Used only by modules of `agent.commands`. `--specs DIR` reads a folder on disk (CI, local work);
`--source URL_OR_PATH --branch B` fetches a git repo exactly as the agent does.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import UsageError
from agent.util.annotations import ReprocessMode

if TYPE_CHECKING:  # agent.sync is imported when a command runs, so `--help` stays fast
    from agent.sync import Prepared


def add_source_args(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("where the desired state comes from")
    src.add_argument("--specs", metavar="DIR", type=Path,
                     help="specs folder on disk (default: ./specs unless --source is given)")
    src.add_argument("--source", metavar="GIT_URL_OR_PATH",
                     help="git repo to fetch, as the agent does (mutually exclusive with --specs)")
    src.add_argument("--branch", default="main", help="branch of --source (default: main)")
    src.add_argument("--specs-path", default="specs",
                     help="specs folder inside --source (default: specs)")
    src.add_argument("--source-id", metavar="ID",
                     help="value of the pachsync.io/managed-by annotation (default: derived "
                          "from the source URL, branch and path, or local:<dir> for --specs)")
    src.add_argument("--cache-dir", type=Path, metavar="DIR",
                     help="where --source clones are kept (default: ~/.cache/pachsync/sources)")
    add_pachd_arg(p)


PACHD_HELP = ("pachd address: host:port, grpc://HOST:PORT, or grpcs://HOST:PORT for TLS, which "
              "trusts the PEM CA bundle named by env PACHSYNC_CA_FILE, else the pachctl "
              "config's server_cas, else the system CAs. Default: env PACHD_ADDRESS, then the "
              "pachctl config (PACH_CONFIG, ~/.pachyderm/config.json), then the in-cluster "
              "PACHD_PEER_SERVICE_HOST/PORT, then localhost:30650. Auth token: env "
              "PACH_PYTHON_AUTH_TOKEN (empty = none) or the file named by "
              "PACHSYNC_AUTH_TOKEN_FILE")


def add_pachd_arg(p: argparse.ArgumentParser) -> None:
    """`--pachd ADDR`, documented the same way (resolution order, TLS, token) everywhere."""
    p.add_argument("--pachd", metavar="ADDR", help=PACHD_HELP)


def add_policy_args(p: argparse.ArgumentParser) -> None:
    pol = p.add_argument_group("policy")
    pol.add_argument("--prune", action="store_true",
                     help="delete pipelines managed by this source that git no longer declares")
    pol.add_argument("--allow-empty", action="store_true",
                     help="allow --prune even when git declares no pipelines at all")
    add_reprocess_arg(pol)
    pol.add_argument("--no-self-heal", dest="self_heal", action="store_false",
                     help="report pipelines changed by hand (drift) instead of reverting them")
    pol.add_argument("--adopt", action="store_true",
                     help="take over pipelines git names that no source has ever managed (one "
                          "spec at a time: annotation pachsync.io/adopt: \"true\"); without it "
                          "they are reported and left alone")


def add_reprocess_arg(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """`--reprocess MODE`, its choices the members of `ReprocessMode` (read back with
    `reprocess_of`)."""
    p.add_argument("--reprocess", choices=[m.value for m in ReprocessMode],
                   default=ReprocessMode.AUTO.value,
                   help="auto (default): reprocess exactly when the transform changed; a spec "
                        "annotation pachsync.io/reprocess overrides it")


def reprocess_of(args: argparse.Namespace) -> ReprocessMode:
    return ReprocessMode(getattr(args, "reprocess", ReprocessMode.AUTO))


def policy_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"prune": getattr(args, "prune", False),
            "allow_empty": getattr(args, "allow_empty", False),
            "reprocess": reprocess_of(args),
            "self_heal": getattr(args, "self_heal", True),
            "adopt": getattr(args, "adopt", False)}


def prepared_from_args(args: argparse.Namespace) -> Prepared:
    """The validated desired state and policy for these options."""
    from agent.sync import SyncOptions, prepare, prepare_local

    if args.source and args.specs:
        raise UsageError("--specs and --source are mutually exclusive",
                         hint="use --specs DIR for a folder, --source URL for a git repo")
    if args.source:
        opts = SyncOptions(source=args.source, branch=args.branch, specs_path=args.specs_path,
                           cache_dir=args.cache_dir, source_id=args.source_id,
                           **policy_kwargs(args))
        return prepare(opts)
    return prepare_local(require_specs_dir(args.specs or Path("specs")), args.source_id,
                         **policy_kwargs(args))


def require_specs_dir(specs: Path) -> Path:
    """A missing folder is a usage error (exit 2), as in `validate`, not a spec error."""
    if not specs.is_dir():
        raise UsageError(specs_dir_problem(specs),
                         hint="pass --specs DIR, the folder holding repos.yaml and pipelines/ "
                              "(or --source URL for a git repo)")
    return specs


def specs_dir_problem(specs: Path) -> str:
    """Why `specs` is not a usable specs folder: missing, or a file (e.g. `--specs README.md`)."""
    if specs.exists():
        return f"specs path {str(specs)!r} is a file, not a folder"
    return f"specs folder {str(specs)!r} not found"
