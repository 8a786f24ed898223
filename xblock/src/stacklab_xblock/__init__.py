"""stacklab labs inside Open edX course units (an XBlock that is a thin client of the stacklab service)."""

__version__ = "0.1.0"
