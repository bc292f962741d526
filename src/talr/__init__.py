"""talr: domain supervised fine-tuning that keeps general capabilities."""

__version__ = "0.1.0"
