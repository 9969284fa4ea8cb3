"""radreview.readerstudy."""
