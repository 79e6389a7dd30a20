"""mmsent: multimodal emotion and sentiment classifiers on MELD-format conversation video."""

__version__ = "0.1.0"
