"""The sync node: change streams to devices, routed by user on the sync ring."""
