"""Pure helpers below every other agent layer (rank 0 in tests/unit/test_layers.py): no I/O, no
imports from the rest of the agent."""
