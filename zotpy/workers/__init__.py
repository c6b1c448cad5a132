"""Every core of the host: a replica as N worker processes sharing one listening socket.

Python serves one request at a time per process, so a replica in one process uses one core. With
``twistd zotpy --workers N`` the process twistd starts (worker 0) binds the listening socket, then
starts workers 1..N-1, each given that socket as a file descriptor and adopting it
(``reactor.adoptStreamPort``): the kernel hands each new connection to one of the processes
waiting in ``accept``, so reads are served by whichever worker accepts them, with no hop.

Why an inherited socket rather than ``SO_REUSEPORT`` (each worker binding the port itself):
with one socket there is one accept queue and one owner of the port; nothing else on the host
that sets ``SO_REUSEPORT`` can join it and take a share of the connections, a port that cannot
be bound fails once, in the parent, before any worker starts (``twistd`` reports it as usual),
and a worker that dies loses no queued connection (with ``SO_REUSEPORT`` the connections hashed
to its socket are reset).

Why writes are serialised with host-wide locks rather than routed to one worker per repository:
what the store promises across requests is kept in storage and read again under the repository's
lock (``index.json``, the metadata document, an upload session's size), so a lock that holds across
the processes (:class:`zotpy.storage.locks.HostLocks`: ``flock`` on files of a directory the
parent makes) keeps those promises wherever the request lands, on local disk and on S3 alike (in
a cluster a repository's writes all reach one replica: its owner, so a host-wide lock is the
whole lock). Routing writes to an owning worker over a Unix socket would instead copy every
uploaded byte through a second process, add a failure mode (the owning worker being down or slow)
and keep the same in-memory state in one place that the storage already keeps. What a worker keeps
in memory is safe to keep per worker: hot reads check ``index.json``'s identity with a ``stat``,
an upload's running hash is used only while the session's size is the one it hashed, parsed
manifests are kept by digest.

Housekeeping that must run once per replica (garbage collection, periodic sync) runs in worker 0
only; metadata is flushed by every worker, each adding its own pull counts under the lock.
"""
