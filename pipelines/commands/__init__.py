"""The commands of ``seqrep``, by group: each module registers its subcommands on the parser
(``register``) with the function that runs each one (``set_defaults(func=...)``).
``pipelines/cli.py`` lists the groups."""
