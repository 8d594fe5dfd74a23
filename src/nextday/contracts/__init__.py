"""The contracts between steps, defined once: tag names, artifact paths, and the typed files
one step writes and another reads (the export's metadata, the monitor's drift reference).

Nothing here imports beyond the standard library and NumPy, so the serving path may use it.
"""
