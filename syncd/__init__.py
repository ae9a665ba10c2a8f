"""The Tessera sync daemon: keeps a local folder and the cluster in step, through the SDK.

A tool above the kernel (``tessera/`` never imports it); it reaches the cluster only through
the public, typed API of ``client`` (``tests/unit/test_layout.py``).
"""
