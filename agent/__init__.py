"""pachsync: GitOps for Pachyderm pipelines.

Layers (each imports only from those below it; tests/unit/test_layers.py enforces it):
cli -> runner -> sync -> plan -> specs -> source / cluster. See DESIGN.md.
"""
