"""The ``actalign`` command line: run, demo, sql."""
