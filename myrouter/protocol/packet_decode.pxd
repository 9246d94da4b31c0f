# C types for packet_decode.py when setup.py compiles it with Cython (an "augmenting .pxd": the
# .py file is the code, this file only adds types). ``max_payload`` and ``expect_seq`` may be None,
# so they stay Python objects; so does ``check_continuation`` (it reads back what was assigned).
import cython

cdef extern from *:
    """
    #ifndef MYROUTER_SOURCE_SHA256
    #define MYROUTER_SOURCE_SHA256 ""
    #endif
    """
    const char* _SOURCE_SHA256 "MYROUTER_SOURCE_SHA256"

cdef object _tuple_new
cdef Py_ssize_t _MAX_PAYLOAD


cdef class PacketDecoder:
    cdef bytearray _buf
    cdef Py_ssize_t _pos
    cdef public Py_ssize_t buffered
    cdef public object max_payload
    cdef public object expect_seq
    cdef public object check_continuation

    cpdef feed(self, data)

    cpdef bytes take_buffered(self)

    @cython.locals(n=Py_ssize_t, head=bytes, length=Py_ssize_t, seq=int)
    cpdef receive(self, data)

    @cython.locals(buf=bytearray, pos=Py_ssize_t, avail=Py_ssize_t, length=Py_ssize_t, seq=int,
                   payload=bytes, total=Py_ssize_t, p=Py_ssize_t, expect=int, plen=Py_ssize_t, pseq=int,
                   q=Py_ssize_t)
    cpdef next_packet(self)

    cdef _check_size(self, Py_ssize_t total)
