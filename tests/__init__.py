"""A package, so that tests/conftest.py does not shadow the root conftest.py: see tests/conftest.py."""
