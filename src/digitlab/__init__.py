"""digitlab: handwritten digit recognition — datasets, model zoo, trainer and tools."""

__version__ = "0.1.0"
