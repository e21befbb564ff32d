"""Jinja2 templates of the emails: ``<name>.subject.j2`` and ``<name>.body.j2`` per template.

A package of its own so setuptools ships the ``*.j2`` files in wheels too.
"""
