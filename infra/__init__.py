"""How the servers start: a local workspace of real processes on this machine (`mlpipe up`).

`components` says what runs (commands, ports, environment), `auth` where credentials come
from when a server listens beyond loopback, `processes` starts, checks and stops processes,
and `local` puts them together as `up`, `down` and `status`.
"""
