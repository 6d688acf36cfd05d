"""Densification strategies: how the set of Gaussians changes during training, behind one hook signature."""

from splat4d.strategy.base import Optimizers as Optimizers
from splat4d.strategy.base import Statistic as Statistic
from splat4d.strategy.base import StepContext as StepContext
from splat4d.strategy.base import Strategy as Strategy
from splat4d.strategy.base import StrategyState as StrategyState
from splat4d.strategy.base import takes_views as takes_views
from splat4d.strategy.default import DefaultStrategy as DefaultStrategy
from splat4d.strategy.default import DefaultStrategyConfig as DefaultStrategyConfig
from splat4d.strategy.mcmc import MCMCStrategy as MCMCStrategy
from splat4d.strategy.mcmc import MCMCStrategyConfig as MCMCStrategyConfig

StrategyConfig = DefaultStrategyConfig | MCMCStrategyConfig
"""Any strategy config (each has `build() -> Strategy`); tyro makes a subcommand per member."""

STRATEGIES: dict[str, StrategyConfig] = {
    "default": DefaultStrategyConfig(),
    "mcmc": MCMCStrategyConfig(),
}
"""Strategy presets by name."""
