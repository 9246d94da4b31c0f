"""The parts of the statement classifier, whose entry points are in :mod:`myrouter.routing.classifier`.

``classification`` (the result types), ``lexical`` (the pre-scan of the text), ``sqlglot_tree``
(parsing with sqlglot, reading its trees), ``set_statement`` (the SET parser) and
``keyword_statements`` (the statement families classified from their keywords alone).
"""
