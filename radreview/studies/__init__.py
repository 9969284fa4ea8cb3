"""radreview.studies."""
