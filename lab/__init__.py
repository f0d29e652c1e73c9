"""Python Concurrency Lab: how concurrency behaves on Python X.Y, on platform P, observed."""

__version__ = "0.1.0"
