"""radreview.gui."""
