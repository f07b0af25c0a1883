"""alignkit: preference data -> reward models -> training-time alignment -> test-time alignment -> evaluation."""

__version__ = "0.1.0"
