"""`pachsync preview`: a pull request's pipeline run for real on throwaway localpachd servers.

The base ref runs once (`run.run_tree`) and its localpachd state is cached by the base commit's
tree hash (`cache`); the working tree is then planned and applied against a copy of that state,
exactly as the agent will after merge, and only what the plan re-runs runs again. `compare`
(pure) sets the two results side by side, `markdown` (pure) writes preview.md, `flow` ties the
steps together for `agent.commands.preview`. Git is read through `checkout` (the git CLI).
"""
