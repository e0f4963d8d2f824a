"""Binlog reading with get/ack/rollback and positions.

Importing any part of the selector registers how its client library's exceptions
classify (PyMySQL's, which mysql-replication raises too): resumable or fatal, see
``pipeline.errors.register_classifier``.
"""

from pipeline.dialect import pymysql_errors
from pipeline.errors import register_classifier

register_classifier(pymysql_errors)
