# C types for loop_core.py when setup.py compiles it with Cython (an "augmenting .pxd": the .py
# file is the code, this file only adds types). HostLoop (hostloop.py) extends LoopCore and reads
# its fields from Python: they are public.
import cython

cdef extern from *:
    """
    #ifndef MYROUTER_SOURCE_SHA256
    #define MYROUTER_SOURCE_SHA256 ""
    #endif
    """
    const char* _SOURCE_SHA256 "MYROUTER_SOURCE_SHA256"

cdef int _READABLE, _WRITABLE


cdef class LoopCore:
    cdef public object fd_batch
    cdef public object _epoll
    cdef public object _wakeup_fd
    cdef public object _callbacks
    cdef public dict _readers
    cdef public dict _writers
    cdef public dict _masks
    cdef public object _outcome

    @cython.locals(readers=dict, writers=dict, masks=dict, _=Py_ssize_t, events=int)
    cpdef _run_until_guest_done(self)
