"""Git access for the agent: the only package that imports GitPython (`git`).

`fetch` (clone/fetch/checkout of the GitOps repo, signature checks) is used by `agent.sync`;
`push` (commit, push with rebase-and-retry, never force) is used by `agent.bump`.
"""
