"""ctrg: structure-observation driven image-text contrastive learning for CT report generation."""

__version__ = "0.1.0"
