"""Benchmarks: ``python -m bench`` (``make bench``) measures tunnels between two namespaces.

See bench/__main__.py for the command and bench/tunnels/ for the tunnels it can measure.
"""
