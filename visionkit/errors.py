"""One exception family for everything visionkit reports to a user.

The CLI turns a :class:`VisionkitError` into a one-line message and an exit code:
``exit_code`` 2 for usage and configuration errors, 1 for runtime errors.
"""

from __future__ import annotations


class VisionkitError(Exception):
    """Base of every error visionkit raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code: int = 1


class UsageError(VisionkitError):
    """The command line or a config is wrong (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A config key or value is wrong; the message names the component, the key and what was expected."""


class UnknownComponentError(UsageError):
    """A component name is not registered; the message lists what is available and the closest match."""


class DuplicateComponentError(VisionkitError):
    """Two plugins register the same component name for the same kind."""


class PluginError(VisionkitError):
    """A plugin failed to import or register; raised only when a pipeline needs it."""


class InputError(VisionkitError):
    """An input (image, video, dataset, checkpoint) is missing, corrupt or unsupported."""


class WeightsError(VisionkitError):
    """Weights could not be found, downloaded or loaded into the model."""


class VisionkitWarning(UserWarning):
    """Something a user should know that does not stop the run (e.g. ``--compile`` fell back to eager). The CLI
    prints it as one ``warning:`` line."""
