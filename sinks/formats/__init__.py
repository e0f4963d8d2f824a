"""Message formats: ``debezium-json``, ``ferry-json`` and ``canal-json``.

Every sink that writes JSON (Kafka, JSONL, stdout ``json``) goes through this package, so
a value is encoded the same way everywhere. What each format writes, value by value:
``docs/formats.md``. The modules, each importing only those above it:

* ``base``: the ``messages()`` contract (:class:`~sinks.formats.base.Format`),
  ``FormatSpec``, the registry of formats (``get_format``) and encode-ahead;
* ``values`` and ``encoder``: value helpers and the JSON encoder the formats share;
* one module per format: ``ferry_json``, ``canal``, and the ``debezium`` package.

The formats register themselves in ``base`` when their module is imported; importing
them here makes the registry complete whichever module of the package is imported first.
"""

from sinks.formats import canal, ferry_json  # noqa: F401  (each registers its format)
from sinks.formats.debezium import envelope  # noqa: F401  (registers debezium-json)
