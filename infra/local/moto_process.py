"""The local stack's moto server process: ``python -m infra.local.moto_process HOST``.

Serves moto (:func:`infra.local.aws.serve`) on ``HOST`` and a free port, writes the port on a line of its
standard output, and serves until its standard input closes (:class:`infra.local.aws.MotoServer` closes
it to stop the server, and the pipe closes by itself when that process dies).
"""

from __future__ import annotations

import contextlib
import sys

from infra.local.aws import serve


def main(argv: list[str]) -> int:
    server = serve(argv[0] if argv else "127.0.0.1")
    print(server.server_port, flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C in the terminal of `polos dev` reaches it too
        sys.stdin.buffer.read()  # until end of file
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
