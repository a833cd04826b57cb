"""The local AWS endpoint: moto server, single-threaded.

moto's threaded server evaluates DynamoDB condition expressions without a lock, so two concurrent conditional writes
of the same item can both succeed. Real DynamoDB serialises writes to an item; serving one request at a time gives
the same guarantee, which Tollgate's exactly-once recording relies on.

usage: python moto_server.py HOST PORT
"""

import os
import sys

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(host, port, app, threaded=False, use_reloader=False, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
