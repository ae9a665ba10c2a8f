"""The ``tessera`` command: one module per command group, ``cli.main`` builds the parser.

Not part of any node: nothing in ``tessera/`` or the node packages imports it.
"""
