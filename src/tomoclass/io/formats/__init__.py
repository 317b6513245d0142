"""One module per particle-table format, behind :mod:`tomoclass.io.particles`.

Each reader takes a :class:`~tomoclass.io.formats.common.ReadContext` and returns the table in
the schema of :mod:`tomoclass.io.schema` with each row's 1-based line number; the checks every
format shares (known classes, bounds, duplicates) are the dispatcher's.
"""
