"""magk-client: a synchronous, threaded SDK for the MAGK real-time workflow protocol."""

__version__ = "0.1.0"

__all__ = ["__version__"]
