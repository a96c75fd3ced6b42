"""The CLI's one error: what is wrong, said in one line (``search-client`` prints it and exits 2)."""


class CliError(Exception):
    pass
