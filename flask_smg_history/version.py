"""The package's version: one place, read by ``pyproject.toml`` (without
importing the package) and by the OpenAPI document."""

__version__ = "0.2.0"
