"""Consumers downstream of the processors: the reference proof validator
(``consumers.verify``, ``hmtel verify``) and the live dashboard (``consumers.dashboard``,
``hmtel dashboard``). They read only the wire contract (schemas) and settings (hmconfig).
"""
