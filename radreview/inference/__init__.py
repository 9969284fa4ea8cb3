"""radreview.inference."""
