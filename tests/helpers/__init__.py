"""Helpers shared by tests in every folder (unit, integration, e2e): real git repos, localpachd
as a subprocess, waiting for jobs. Importable as `helpers.*` because pytest puts tests/ (the
folder of the top conftest.py) on sys.path."""
