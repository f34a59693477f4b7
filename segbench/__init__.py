"""segbench: the classic semantic-segmentation architectures under one protocol."""

__version__ = "0.1.0"
