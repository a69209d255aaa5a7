"""Exports of the bank (or one quiz) to LMS formats; one module per format."""
