"""radreview: review musculoskeletal radiographs with AI assistance.

Research use only, not for clinical diagnosis.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("radreview")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

RESEARCH_USE_NOTICE = "For research use only. Not for clinical diagnosis."


class RadreviewWarning(UserWarning):
    """Warnings radreview raises itself; the test suite turns them into errors."""
