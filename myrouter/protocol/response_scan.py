"""The scanning kernel of ``ResponseTracker`` (see response.py, which is the module to import).

This file is plain Python and runs as such; setup.py also compiles it with Cython, the C types of
its fields and locals coming from response_scan.pxd beside it (Cython's "augmenting .pxd": the
Python source stays the single definition). ``kernels.load`` picks the compiled module when it was
built from this very source, this file otherwise; MYROUTER_PURE_PYTHON=1 forces this file.

What the compiled form needs from the code: ``feed`` turns any input into ``bytes`` (typed
indexing of ``bytes`` is a bounds-checked C read), packet lengths are read byte by byte (no
``struct`` call), and no method is added or removed without its line in the .pxd.
"""

from __future__ import annotations

import enum

from .codec import Reader
from .constants import MAX_PACKET_PAYLOAD, Capability, Status
from .errors import MalformedPacket


def source_sha256() -> bytes:
    """SHA-256 (hex, ASCII) of the sources the compiled module was built from (setup.py defines it
    in C; see response_scan.pxd). Plain Python has no such name: only the compiled module answers."""
    return _SOURCE_SHA256  # noqa: F821


class ResponseKind(enum.IntEnum):
    NONE = 0  # the command has no response (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA, COM_QUIT)
    SIMPLE = 1  # one OK, ERR or EOF packet
    RESULT = 2  # OK | ERR | LOCAL INFILE request | result sets (text or binary), possibly several
    PREPARE = 3  # COM_STMT_PREPARE: OK + parameter and column definitions, or ERR
    FIELD_LIST = 4  # column definitions ended by EOF, or ERR
    FETCH = 5  # COM_STMT_FETCH: binary rows ended by EOF, or ERR
    STATISTICS = 6  # one packet holding a plain string


class _St(enum.IntEnum):
    FIRST = 0  # first packet of a result: OK / ERR / LOCAL INFILE / column count
    COLUMNS = 1  # counting column definitions
    COLUMNS_EOF = 2  # the EOF after the column definitions (no DEPRECATE_EOF)
    ROWS = 3  # rows until EOF/OK or ERR
    PREP_FIRST = 4
    PREP_PARAMS = 5
    PREP_PARAMS_EOF = 6
    PREP_COLS = 7
    PREP_COLS_EOF = 8
    SINGLE = 9  # one OK/ERR/EOF
    STATS = 10  # one packet of anything
    LOCAL_INFILE = 11  # paused: the client sends a file
    DONE = 12


# The states as plain ints: the tracker compares them on every packet, and enum members
# cost an attribute lookup each (``_St`` gives their names for error messages).
_FIRST = 0
_COLUMNS = 1
_COLUMNS_EOF = 2
_ROWS = 3
_PREP_FIRST = 4
_PREP_PARAMS = 5
_PREP_PARAMS_EOF = 6
_PREP_COLS = 7
_PREP_COLS_EOF = 8
_SINGLE = 9
_STATS = 10
_LOCAL_INFILE = 11
_DONE = 12
assert [s.value for s in _St] == list(range(13))
# States whose packets are only counted (their bodies are never looked at).
_COUNTED = frozenset((_COLUMNS, _PREP_PARAMS, _PREP_COLS, _STATS))
# Plain ints: enum.IntFlag operators are slow on the per-response path.
_DEPRECATE_EOF = int(Capability.DEPRECATE_EOF)
_MORE_RESULTS = int(Status.MORE_RESULTS_EXISTS)
_CURSOR_EXISTS = int(Status.CURSOR_EXISTS)
_MAX_PAYLOAD = MAX_PACKET_PAYLOAD
# Largest packet the tracker will buffer to interpret (OK/ERR/EOF/column count are small).
_MAX_INTERPRETED = 1 << 20
_INITIAL_STATE = {
    ResponseKind.RESULT: _FIRST,
    ResponseKind.PREPARE: _PREP_FIRST,
    ResponseKind.FIELD_LIST: _ROWS,
    ResponseKind.FETCH: _ROWS,
    ResponseKind.SIMPLE: _SINGLE,
    ResponseKind.STATISTICS: _STATS,
    ResponseKind.NONE: _DONE,
}


def ok_status(body: bytes | bytearray | memoryview) -> int:
    """Status flags of an OK packet body (header, lenenc affected rows, lenenc insert id, status)."""
    pos = 1
    for _ in range(2):
        if pos >= len(body):
            raise MalformedPacket("truncated OK packet")
        b = body[pos]
        pos += 1 if b < 0xFB else (3 if b == 0xFC else 4 if b == 0xFD else 9 if b == 0xFE else 0)
        if b == 0xFB or b == 0xFF:
            raise MalformedPacket("invalid length-encoded integer in OK packet")
    if pos + 2 > len(body):
        raise MalformedPacket("truncated OK packet")
    return body[pos] | body[pos + 1] << 8


class ResponseTracker:
    """Follows one response, fed in arbitrary pieces, and says where it ends."""

    __slots__ = (
        "kind",
        "deprecate_eof",
        "cursor",
        "_state",
        "_count",
        "_pending_cols",
        "_cont",
        "_skip",
        "_partial",
        "_eof_limit",
        "status",
        "status_seen",
        "next_seq",
        "error",
        "last_ok",
        "rows",
        "results",
        "prepare_ok",
        "columns",
        "row_kind",
    )

    def __init__(self, kind: ResponseKind, capabilities: int, *, cursor: bool = False, row_kind: int = 0) -> None:
        self.kind = kind
        # int(): a Capability flag's ``&`` is a Python-level enum operator
        self.deprecate_eof = deprecate_eof = bool(int(capabilities) & _DEPRECATE_EOF)
        # a 0xFE packet shorter than this is an EOF (with DEPRECATE_EOF: an OK-style terminator), not a row
        self._eof_limit = _MAX_PAYLOAD if deprecate_eof else 9
        self.cursor = cursor  # COM_STMT_EXECUTE asked for a cursor
        self.row_kind = row_kind
        self._count = 0
        self._pending_cols = 0
        self._cont = False  # the previous packet was 16 MiB - 1: this one continues it
        self._skip = 0  # body bytes of the current packet still to pass over
        self._partial: bytearray | None = None  # bytes of a packet whose interesting part straddles feeds
        self.status = 0  # status flags of the last OK/EOF seen
        self.status_seen = False  # an OK/EOF was seen (an ERR-only response has no status)
        self.next_seq = 1  # sequence id that follows the last packet seen
        self.error: bytes | None = None  # ERR payload if the response ended with an error
        self.last_ok: bytes | None = None  # payload of the last OK packet (or OK-style terminator)
        self.rows = 0  # rows seen (all result sets)
        self.results = 0  # result sets or OKs completed
        self.prepare_ok: bytes | None = None
        self.columns = 0  # columns of the last result set; 0 when the last result was an OK
        self._state = _INITIAL_STATE.get(kind, _DONE)

    # -- public state -------------------------------------------------------

    @property
    def done(self) -> bool:
        """The whole response has been seen, including the last byte of its last packet."""
        return self._state == _DONE and not self._skip and not self._cont and self._partial is None

    @property
    def local_infile(self) -> bool:
        return self._state == _LOCAL_INFILE

    @property
    def in_packet(self) -> bool:
        """True while the bytes seen so far end in the middle of a packet."""
        return bool(self._skip or self._partial or self._cont)

    def resume_after_local_infile(self) -> None:
        """The client has sent its file (ended by an empty packet); the server's OK/ERR follows."""
        if self._state != _LOCAL_INFILE:
            raise RuntimeError("not waiting for a LOCAL INFILE")
        self._state = _FIRST

    # -- feeding ------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Consume bytes; return how many belong to this response (all, unless it ended early)."""
        if type(data) is not bytes:
            data = bytes(data)  # compiled, the scan reads ``bytes`` only (the data plane's reads are)
        pos = 0
        if self._state == _FIRST and not (self._skip or self._cont or self.cursor) and self._partial is None:
            # The usual case: a whole response in one read. One pass, few attribute writes.
            pos = self._whole(data, 0)
            if self._state == _DONE:
                return pos
        return self._feed_from(data, pos)

    def _whole(self, data, start: int) -> int:
        """From the first packet of a result at ``start``: consume what is whole in ``data`` (an OK or ERR; a result
        set's header, rows and terminator) and return where it stopped. Anything unusual (MORE_RESULTS,
        LOCAL INFILE, long packets, pieces of packets) is left, untouched, to the general path."""
        n = len(data)
        if n - start < 5:
            return start
        length = data[start] | data[start + 1] << 8 | data[start + 2] << 16
        end = start + 4 + length
        if end > n or length == 0 or length >= _MAX_PAYLOAD:
            return start
        first = data[start + 4]
        if first == 0xFF or first == 0x00:
            if length > _MAX_INTERPRETED:
                return start
            body = bytes(data[start + 4 : end])
            if first == 0xFF:
                self.error = body
            else:
                if length < 7:
                    return start
                status = ok_status(body)
                if status & _MORE_RESULTS:
                    return start
                self.status = status
                self.status_seen = True
                self.last_ok = body
                self.results += 1
                self.columns = 0
            self.next_seq = (data[start + 3] + 1) & 0xFF
            self._state = _DONE
            return end
        if length != 1 or first >= 0xFB:
            return start
        # column count, column definitions, and (without DEPRECATE_EOF) their EOF
        p = end
        last = start  # header of the last packet passed over
        count = first
        while count:
            if n - p < 4:
                return start
            length = data[p] | data[p + 1] << 8 | data[p + 2] << 16
            if length == 0 or length >= _MAX_PAYLOAD:
                return start
            last = p
            p += 4 + length
            count -= 1
        deprecate_eof = self.deprecate_eof
        if not deprecate_eof:
            if n - p < 9 or data[p + 4] != 0xFE:
                return start
            length = data[p] | data[p + 1] << 8 | data[p + 2] << 16
            if not 5 <= length < 7 or p + 4 + length > n:
                return start
            self.status = data[p + 7] | data[p + 8] << 8
            self.status_seen = True
            last = p
            p += 4 + length
        elif p > n:
            return start
        self.columns = first
        self._state = _ROWS
        self.next_seq = (data[last + 3] + 1) & 0xFF
        p = self._pass_rows(data, p)
        # the terminator, if it is all there; else the general path goes on from ``p``
        if n - p < 5:
            return p
        length = data[p] | data[p + 1] << 8 | data[p + 2] << 16
        end = p + 4 + length
        if end > n or length == 0 or data[p + 4] != 0xFE or length >= self._eof_limit:
            return p
        if deprecate_eof:
            if length < 7:
                return p
            body = bytes(data[p + 4 : end])
            status = ok_status(body)
        else:
            if length < 5:
                return p
            body = None
            status = data[p + 7] | data[p + 8] << 8
        if status & _MORE_RESULTS:
            return p
        self.status = status
        self.status_seen = True
        if body is not None:
            self.last_ok = body
        self.results += 1
        self.next_seq = (data[p + 3] + 1) & 0xFF
        self._state = _DONE
        return end

    def _pass_rows(self, data, pos: int) -> int:
        """Pass over the whole row packets from ``pos``, counted by their headers, up to the terminator, an
        ERR or a packet not all there; return where they stopped (``rows`` and ``next_seq`` follow)."""
        n = len(data)
        limit = self._eof_limit
        rows = 0
        last = pos
        while n - pos >= 5:
            length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
            end = pos + 4 + length
            if end > n or length == 0 or length >= _MAX_PAYLOAD:
                break
            first = data[pos + 4]
            if first == 0xFF or (first == 0xFE and length < limit):
                break
            rows += 1
            last = pos
            pos = end
        if rows:
            self.rows += rows
            self.next_seq = (data[last + 3] + 1) & 0xFF
        return pos

    def _feed_from(self, data, pos: int) -> int:
        n = len(data)
        if self._skip:
            k = self._skip if self._skip < n else n
            self._skip -= k
            pos += k
        state = self._state
        while pos < n and (state < _LOCAL_INFILE or self._cont):
            if self._partial is None and not self._cont:
                if state == _ROWS:
                    pos = self._pass_rows(data, pos)  # whole rows, by their headers; the terminator: below
                    if pos >= n:
                        break
                elif state == _FIRST and not self.cursor:
                    end = self._whole(data, pos)  # the next result set (after MORE_RESULTS)
                    if end != pos:
                        pos = end
                        state = self._state
                        continue
            if self._partial is None and not self._cont and n - pos >= 5:
                # Fast path: a whole packet (not a 16 MiB piece) that starts here. Rows and
                # counted packets are passed over by their headers; small packets are interpreted.
                length = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
                end = pos + 4 + length
                if end <= n and 0 < length < _MAX_PAYLOAD:
                    self.next_seq = (data[pos + 3] + 1) & 0xFF
                    if state == _ROWS:
                        first = data[pos + 4]
                        if first == 0xFF or (first == 0xFE and length < self._eof_limit):
                            self._terminator(bytes(data[pos + 4 : end]))
                            state = self._state
                        else:
                            self.rows += 1
                    elif state in _COUNTED:
                        self._counted()
                        state = self._state
                    else:
                        if length > _MAX_INTERPRETED:
                            raise MalformedPacket(f"unexpected {length}-byte packet in state {_St(state).name}")
                        self._full(bytes(data[pos + 4 : end]))
                        state = self._state
                    pos = end
                    continue
            # General path: pieces of packets, continuations, empty packets.
            if self._partial is not None:
                part = self._partial
                have = len(part)
                combined = bytes(part) + bytes(data[pos : pos + 4 + _MAX_INTERPRETED])
                total = self._packet(combined, 0)
                state = self._state
                if total < 0:
                    part += data[pos:]
                    if len(part) > 4 + _MAX_INTERPRETED:
                        raise MalformedPacket("response packet too large to interpret")
                    return n
                self._partial = None
                take = total - have
                if take > n - pos:
                    self._skip = take - (n - pos)
                    return n
                pos += take
                continue
            total = self._packet(data, pos)
            state = self._state
            if total < 0:
                self._partial = bytearray(data[pos:])
                return n
            end = pos + total
            if end > n:
                self._skip = end - n
                return n
            pos = end
        return pos

    def _packet(self, buf, start: int) -> int:
        """Interpret the packet at ``start``; return its total size, or -1 if more bytes are needed."""
        avail = len(buf) - start
        if avail < 4:
            return -1
        length = buf[start] | buf[start + 1] << 8 | buf[start + 2] << 16
        self.next_seq = (buf[start + 3] + 1) & 0xFF
        if self._cont:
            self._cont = length == _MAX_PAYLOAD
            return 4 + length
        st = self._state
        if st in _COUNTED:
            self._cont = length == _MAX_PAYLOAD
            self._counted()
            return 4 + length
        if st == _ROWS:
            if length == 0:
                raise MalformedPacket("empty packet where a row or a terminator was expected")
            if avail < 5:
                return -1
            first = buf[start + 4]
            if first == 0xFF or (first == 0xFE and length < self._eof_limit):
                if avail < 4 + length:
                    return -1
                self._terminator(bytes(buf[start + 4 : start + 4 + length]))
                return 4 + length
            self.rows += 1
            self._cont = length == _MAX_PAYLOAD
            return 4 + length
        if length > _MAX_INTERPRETED:
            raise MalformedPacket(f"unexpected {length}-byte packet in state {_St(st).name}")
        if avail < 4 + length:
            return -1
        self._full(bytes(buf[start + 4 : start + 4 + length]))
        return 4 + length

    def _counted(self) -> None:
        self._count -= 1
        if self._count > 0:
            return
        st = self._state
        if st == _STATS:
            self._state = _DONE
        elif st == _COLUMNS:
            self._state = _COLUMNS_EOF if not self.deprecate_eof or self.cursor else _ROWS
        elif st == _PREP_PARAMS:
            if not self.deprecate_eof:
                self._state = _PREP_PARAMS_EOF
            else:
                self._after_params()
        elif st == _PREP_COLS:
            self._state = _PREP_COLS_EOF if not self.deprecate_eof else _DONE

    def _after_params(self) -> None:
        if self._pending_cols:
            self._state = _PREP_COLS
            self._count = self._pending_cols
        else:
            self._state = _DONE

    def _terminator(self, body: bytes) -> None:
        if body[0] == 0xFF:
            self.error = body
            self._state = _DONE
            return
        if len(body) >= 7:  # OK-style terminator (DEPRECATE_EOF)
            self.status = ok_status(body)
            self.last_ok = body
        elif len(body) >= 5:
            self.status = body[3] | body[4] << 8
        else:
            raise MalformedPacket("truncated EOF packet")
        self.status_seen = True
        self.results += 1
        if self.status & _MORE_RESULTS and self.kind == ResponseKind.RESULT:
            self._state = _FIRST
        else:
            self._state = _DONE

    def _full(self, body: bytes) -> None:
        st = self._state
        if not body:
            raise MalformedPacket(f"empty packet in state {_St(st).name}")
        first = body[0]
        if st == _FIRST:
            if first == 0x00 and len(body) >= 7:
                self.status = ok_status(body)
                self.status_seen = True
                self.last_ok = body
                self.results += 1
                self.columns = 0
                self._state = _FIRST if self.status & _MORE_RESULTS else _DONE
            elif first == 0xFF:
                self.error = body
                self._state = _DONE
            elif first == 0xFB:
                self._state = _LOCAL_INFILE
            else:
                count = first if first < 0xFB else Reader(body).lenenc_int()
                if count == 0:
                    raise MalformedPacket("result set with zero columns")
                self._count = count
                self.columns = count
                self._state = _COLUMNS
        elif st == _COLUMNS_EOF:
            if first == 0xFF:
                self.error = body
                self._state = _DONE
                return
            self.status = ok_status(body) if len(body) >= 7 else _eof_status(body)
            self.status_seen = True
            if self.cursor and self.status & _CURSOR_EXISTS:
                self.results += 1
                self._state = _DONE  # rows come later, through COM_STMT_FETCH
            else:
                self._state = _ROWS
        elif st == _PREP_FIRST:
            if first == 0xFF:
                self.error = body
                self._state = _DONE
                return
            if first != 0x00 or len(body) < 9:
                raise MalformedPacket("bad COM_STMT_PREPARE response")
            self.prepare_ok = body
            cols = body[5] | body[6] << 8
            params = body[7] | body[8] << 8
            self._pending_cols = cols
            if params:
                self._state = _PREP_PARAMS
                self._count = params
            else:
                self._after_params()
        elif st == _PREP_PARAMS_EOF:
            _eof_status(body)
            self._after_params()
        elif st == _PREP_COLS_EOF:
            _eof_status(body)
            self._state = _DONE
        elif st == _SINGLE:
            if first == 0xFF:
                self.error = body
            elif first == 0x00 and len(body) >= 7:
                self.status = ok_status(body)
                self.status_seen = True
                self.last_ok = body
            elif first == 0xFE and len(body) >= 5:
                self.status = ok_status(body) if len(body) >= 7 else _eof_status(body)
                self.status_seen = True
            else:
                raise MalformedPacket(f"unexpected packet 0x{first:02x} where OK/ERR/EOF was expected")
            self._state = _DONE
        else:  # pragma: no cover - every state is handled above
            raise MalformedPacket(f"unexpected packet in state {_St(st).name}")


def _eof_status(body: bytes) -> int:
    if len(body) < 5 or body[0] != 0xFE:
        raise MalformedPacket("expected an EOF packet")
    return body[3] | body[4] << 8
