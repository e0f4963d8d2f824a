"""``debezium-json``, split by what each part follows in Debezium: ``options`` (its option
names), ``converters`` (a column's values), ``writer`` (the row writer generated per table
definition), ``connect`` (JsonConverter's pieces both kinds of event share),
``schema_changes`` (the events of a DDL) and ``envelope`` (the format and its row events).
Imports go in that order, never back.
"""
