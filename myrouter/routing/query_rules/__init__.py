"""The parts of the query rules, whose loading (and public names) are in :mod:`myrouter.routing.rules`.

``row`` (a ``mysql_query_rules`` row, the context a rule sees, the decision), ``compiled`` (a rule
compiled for evaluation) and ``ruleset`` (:class:`RuleSet`, the evaluation engine).
"""
