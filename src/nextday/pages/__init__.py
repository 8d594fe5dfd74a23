"""Markdown and HTML for the reports every stage writes: the bottom layer, importing nothing
of nextday's, so that data checks, evaluation and calibration can write their pages."""
