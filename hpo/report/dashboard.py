"""optuna-dashboard for a study's storage: loopback by default, read-only on request."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from hpo.errors import HpoError

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SERVER_THREADS = 8  # concurrent requests; the dashboard polls, so a few users need several


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_binding(host: str, read_only: bool, allow_remote_writes: bool) -> None:
    """Refuse to expose a dashboard that can change the study, unless told twice."""
    if not is_loopback(host) and not read_only and not allow_remote_writes:
        raise HpoError(
            f"--host {host} lets anyone who can reach it change or delete the study; add "
            "--read-only, or --allow-remote-writes if that is what you want"
        )


def read_only(app: WSGIApp) -> WSGIApp:
    """A WSGI app that answers 403 to every request that could change the storage."""

    def guarded(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD", "GET").upper() in SAFE_METHODS:
            return app(environ, start_response)
        body = json.dumps({"reason": "this dashboard is read-only"}).encode()
        start_response("403 Forbidden", [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(body)))])
        return [body]

    return guarded


def make_app(storage: BaseStorage, readonly: bool) -> WSGIApp:
    """The optuna-dashboard WSGI app over an opened storage."""
    import optuna_dashboard

    app = optuna_dashboard.wsgi(storage)
    return read_only(app) if readonly else app


def serve(app: WSGIApp, host: str, port: int, announce: Callable[[Any], None]) -> None:
    """Serve with waitress, a multi-threaded production WSGI server, until interrupted."""
    import waitress

    server = waitress.create_server(app, host=host, port=port, threads=SERVER_THREADS,
                                    ident="hpo-dashboard")
    announce(server.effective_port)
    server.run()
