"""Sub-commands of the radreview command; see radreview.cli."""
