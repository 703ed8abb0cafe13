"""The CainGAN pose editor: PySide6 + pyqtgraph widgets and the worker threads that feed them.

Geometry and model code live in `caingan/`; this package only arranges, displays and schedules.
"""
