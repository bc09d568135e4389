"""`python -m localpachd serve ...` — same as the `localpachd` console script."""

from localpachd.cli import main

raise SystemExit(main())
