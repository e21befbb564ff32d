"""The checkout suite as a whole: the ``checkout-suite`` command that runs, migrates and tries it.

This is the one package that knows all four services (``tests/test_boundaries.py`` holds the
services and the kit to never importing it). Importing it loads none of them: each command
imports a service's code only when it needs it.
"""
