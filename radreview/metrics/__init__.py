"""radreview.metrics."""
