"""The one exception type that means "the user gave us something wrong".

Every layer raises :class:`TensorfabError` with a single line that names the place
(file:line, spec field, request). The CLI prints it as ``error: ...`` and exits 2;
anything else escaping is a bug in tensorfab and keeps its traceback.
"""


class TensorfabError(Exception):
    """A problem with the user's input or environment, explained in one line."""
