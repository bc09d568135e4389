"""The results report: accuracy heatmap, leaderboard, pipeline graph and jobs in one HTML page.

Pure rendering lives here (`model`, `graph`, `heatmap`, `dag`, `page`, `render`); `collect`
reads the live cluster through `agent.cluster.outputs` and is imported only by the command.
`pachsync report` (agent.commands.report) and the demo call `collect` then `write_report`.
"""
