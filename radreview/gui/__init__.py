"""radreview.gui: the Qt layer (windows, widgets, worker threads) over the other packages.

Importing it applies :mod:`radreview.gui.qt_fixes` (defects of the Qt bindings) once.
"""

from radreview.gui import qt_fixes

qt_fixes.apply()
