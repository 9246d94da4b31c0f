"""Finding the end of a server response without decoding it.

The proxy forwards backend responses as raw bytes. ``ResponseTracker`` watches
those bytes go by: it reads each packet header, looks only at the bytes that
decide where the response ends (first packets, terminators), and keeps the
status flags of the last OK/EOF so the session knows the transaction state.
Rows are counted, never decoded.

Usage::

    tracker = ResponseTracker(response_kind(cmd), capabilities)
    while not tracker.done:
        data = <receive>
        n = tracker.feed(data)        # bytes of ``data`` that belong to the response
        <forward data[:n]>
        if tracker.local_infile:      # the server asked for a LOCAL INFILE
            <relay the client's file packets>; tracker.resume_after_local_infile()

The tracker itself is in response_scan.py, a kernel that setup.py also compiles (kernels.py says
which form runs); this module is the one to import.
"""

from __future__ import annotations

from . import kernels
from .constants import Command

_scan = kernels.load("protocol.response_scan")
ResponseKind = _scan.ResponseKind
ResponseTracker = _scan.ResponseTracker
ok_status = _scan.ok_status

_KIND_BY_COMMAND = {
    Command.QUERY: ResponseKind.RESULT,
    Command.STMT_EXECUTE: ResponseKind.RESULT,
    Command.PROCESS_INFO: ResponseKind.RESULT,
    Command.STMT_PREPARE: ResponseKind.PREPARE,
    Command.FIELD_LIST: ResponseKind.FIELD_LIST,
    Command.STMT_FETCH: ResponseKind.FETCH,
    Command.STATISTICS: ResponseKind.STATISTICS,
    Command.STMT_CLOSE: ResponseKind.NONE,
    Command.STMT_SEND_LONG_DATA: ResponseKind.NONE,
    Command.QUIT: ResponseKind.NONE,
}


def response_kind(command: int) -> ResponseKind:
    return _KIND_BY_COMMAND.get(command, ResponseKind.SIMPLE)

