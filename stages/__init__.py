"""The data-science code run inside pipeline datums: split, train, evaluate, select.

Each stage is `python3 -m stages.<name>`; every path arrives as an argument, never a hard-coded
`/pfs`. Stages import neither `agent` nor `localpachd`.
"""
