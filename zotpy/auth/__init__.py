"""Who is asking, and may they: zot's ``http.auth`` and ``http.accessControl``.

One module per job: :mod:`.identity` (who), :mod:`.settings` (the config keys), :mod:`.basic`
(parsing ``Authorization: Basic``), :mod:`.htpasswd` (a bcrypt password file), :mod:`.cache`
(verified credentials), :mod:`.policy` (zot's access rules), :mod:`.actions` (which action a
route needs) and :mod:`.resource` (the ``IResource`` that refuses before anything is forwarded).
"""
