"""The command-line tools of videotl, installed as the package ``videotl_tools`` with console
scripts (``videotl-train``, ...); each module also runs as ``python tools/<name>.py``."""
