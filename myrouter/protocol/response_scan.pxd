# C types for response_scan.py when setup.py compiles it with Cython (an "augmenting .pxd": the
# .py file is the code, this file only adds types). Integers that may exceed 64 bits on hostile
# input (a column count is a length-encoded integer) stay Python objects, so that the compiled
# module and the plain Python one behave the same on every input.
import cython

cdef extern from *:
    """
    #ifndef MYROUTER_SOURCE_SHA256
    #define MYROUTER_SOURCE_SHA256 ""
    #endif
    """
    const char* _SOURCE_SHA256 "MYROUTER_SOURCE_SHA256"

cdef int _FIRST, _COLUMNS, _COLUMNS_EOF, _ROWS, _PREP_FIRST, _PREP_PARAMS, _PREP_PARAMS_EOF
cdef int _PREP_COLS, _PREP_COLS_EOF, _SINGLE, _STATS, _LOCAL_INFILE, _DONE
cdef frozenset _COUNTED
cdef long _DEPRECATE_EOF, _MORE_RESULTS, _CURSOR_EXISTS
cdef Py_ssize_t _MAX_PAYLOAD, _MAX_INTERPRETED
cdef dict _INITIAL_STATE


@cython.locals(pos=Py_ssize_t, b=int, _=int)
cpdef int ok_status(body) except -1

cdef int _eof_status(bytes body) except -1


cdef class ResponseTracker:
    cdef public object kind
    cdef public bint deprecate_eof
    cdef public object cursor
    cdef int _state
    cdef object _count
    cdef object _pending_cols
    cdef bint _cont
    cdef Py_ssize_t _skip
    cdef object _partial
    cdef Py_ssize_t _eof_limit
    cdef public int status
    cdef public bint status_seen
    cdef public int next_seq
    cdef public object error
    cdef public object last_ok
    cdef public Py_ssize_t rows
    cdef public Py_ssize_t results
    cdef public object prepare_ok
    cdef public object columns
    cdef public object row_kind

    @cython.locals(pos=Py_ssize_t)
    cpdef Py_ssize_t feed(self, data) except -1

    @cython.locals(n=Py_ssize_t, length=Py_ssize_t, end=Py_ssize_t, p=Py_ssize_t, last=Py_ssize_t,
                   count=Py_ssize_t, first=int, status=int, deprecate_eof=bint)
    cdef Py_ssize_t _whole(self, bytes data, Py_ssize_t start) except -1

    @cython.locals(n=Py_ssize_t, limit=Py_ssize_t, rows=Py_ssize_t, last=Py_ssize_t, length=Py_ssize_t,
                   end=Py_ssize_t, first=int)
    cdef Py_ssize_t _pass_rows(self, bytes data, Py_ssize_t pos) except -1

    @cython.locals(n=Py_ssize_t, k=Py_ssize_t, state=int, length=Py_ssize_t, end=Py_ssize_t, first=int,
                   have=Py_ssize_t, total=Py_ssize_t, take=Py_ssize_t)
    cdef Py_ssize_t _feed_from(self, bytes data, Py_ssize_t pos) except -1

    @cython.locals(avail=Py_ssize_t, length=Py_ssize_t, st=int, first=int)
    cdef Py_ssize_t _packet(self, bytes buf, Py_ssize_t start) except? -1

    @cython.locals(st=int)
    cdef _counted(self)

    cdef _after_params(self)

    cdef _terminator(self, bytes body)

    @cython.locals(st=int, first=int, cols=int, params=int)
    cdef _full(self, bytes body)
