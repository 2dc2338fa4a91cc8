"""Numba kernels: the byte work of the writer and readers.

``encode``: numpy batches -> file records and detail framing (writer).
``decode``: bounds-checked scans of file bytes (detail offset table, checks).
``merge``: k-way merge of thread event arrays into the session order.
``fnv``: FNV-1a 64 over byte buffers (interoperability checks).

Every kernel is ``@njit(cache=True, nogil=True)`` and every kernel that reads
file bytes checks lengths against its buffer, whatever the file says.
"""
