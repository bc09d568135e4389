"""One module per `pachsync` subcommand; each exposes `register(subparsers)` (see agent.cli)."""
