# C types for recording.py when setup.py compiles it with Cython (an "augmenting .pxd": the .py
# file is the code, this file only adds types). Counts and sums that come from the wire or a clock
# stay Python objects (same results as the Python form on any input); what is typed is the
# objects' layout, so ``record`` reads and writes its fields without a dictionary lookup.
import cython

cdef extern from *:
    """
    #ifndef MYROUTER_SOURCE_SHA256
    #define MYROUTER_SOURCE_SHA256 ""
    #endif
    """
    const char* _SOURCE_SHA256 "MYROUTER_SOURCE_SHA256"

cdef object _bisect_left


cdef class _Digest:
    cdef public object digest_text
    cdef public object count_star
    cdef public object first_seen
    cdef public object last_seen
    cdef public object sum_time
    cdef public object min_time
    cdef public object max_time
    cdef public object sum_rows_affected
    cdef public object sum_rows_sent


cdef class DigestRecorder:
    cdef public object _entries
    cdef public object _clock
    cdef public object _max_digests
    cdef public object evicted
    cdef public object enabled

    cpdef _evict_above(self, limit)

    @cython.locals(e=_Digest)
    cpdef record(self, hostgroup, schemaname, username, client_address, digest, digest_text, duration_us,
                 rows_affected, rows_sent)


cdef class _Command:
    cdef public object total_time_us
    cdef public object total_cnt
    cdef public list buckets


cdef class CommandRecorder:
    cdef public dict _by_name
    cdef public dict _counters
    cdef object _command_key
    cdef tuple _bounds
    cdef public object slow_query_us
    cdef public object slow_queries
    cdef public object enabled

    @cython.locals(c=_Command)
    cpdef record(self, command_name, duration_us)
