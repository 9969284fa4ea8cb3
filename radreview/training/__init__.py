"""radreview.training."""
