"""Reader-study mode: sign-in dialog and reading window over :mod:`radreview.readerstudy`.

Everything a reader sees comes from a :class:`radreview.readerstudy.reading.ReaderSession`, which
exposes only the reader's own assignment and reads; the GUI has no other way into the study.
"""

from radreview.gui.reading.sign_in import SignInDialog
from radreview.gui.reading.window import ReadingWindow

__all__ = ["ReadingWindow", "SignInDialog"]
