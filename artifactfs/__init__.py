"""artifactfs: versioned artifacts you mount as plain folders."""

__version__ = "0.1.0"
