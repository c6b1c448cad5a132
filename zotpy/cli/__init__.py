"""The ``zotpy`` command: operator subcommands that answer questions about a configuration without
serving anything (the registry itself runs under ``twistd zotpy``).

One module per subcommand, each exposing a :class:`~zotpy.cli.command.Subcommand` named ``COMMAND``;
:mod:`zotpy.cli.main` lists them. To add one, write the module and add it to ``SUBCOMMANDS`` there.
"""
