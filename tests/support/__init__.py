"""What test modules share: fakes, harnesses and helpers (fixtures are in tests/conftest.py)."""
