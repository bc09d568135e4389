"""localpachd: a single-machine server that speaks Pachyderm's gRPC API (pfs, pps, transactions).

The real python-pachyderm client talks to it unmodified. See DESIGN.md, "localpachd architecture".
"""
