"""Helpers the tests share, imported as ``tests.support.<module>``; their fixtures are in
``tests.support.fixtures``."""
