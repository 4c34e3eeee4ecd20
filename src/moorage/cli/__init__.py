"""The ``moor`` command line: thin command groups that parse, call and print."""
