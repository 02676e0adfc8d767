"""The one error type a user sees. The CLI prints its message on one line and exits 2."""


class SeasonrecError(Exception):
    """A problem with the user's input or environment, worded for that user."""


class InputError(SeasonrecError):
    """Bad input data: the message names the file and, where there is one, the column."""

    def __init__(self, file: object, message: str, column: str | None = None):
        where = f"{file}" + (f": column '{column}'" if column else "")
        super().__init__(f"{where}: {message}")
        self.file = str(file)
        self.column = column
