"""The running configuration: the Config, its query rules and variables, swapped as one."""

from __future__ import annotations

from ..config import Config
from ..routing.rules import RuleSet, load_rules


def load_rules_for(config: Config) -> RuleSet:
    """The query rules of a config: ``[[mysql_query_rules]]`` of the config file, then ``rules_dir/*.toml``.
    Raises ConfigError naming the file, line and column of a bad rule."""
    return load_rules(config.rules_dir if config.rules_dir.is_dir() else None, set(config.hostgroups()),
                      config_file=config.path if config.query_rules_raw else None)
