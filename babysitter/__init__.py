"""The ``babysitter`` command line: ``demo``, ``dashboard``, ``check``, ``compare``, ``report``."""
