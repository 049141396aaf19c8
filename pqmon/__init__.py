"""The ``pqmon`` command and the ``pqmon up`` launcher: the layer that wires the parts together.

``core`` is the ground every part stands on and imports none of them; ``collector``,
``analysis``, ``reports`` and ``dashboard`` build on ``core``; this package sits above them all.
"""
