"""The exception yolo-lightning raises for bad user input (the CLI prints it as one line)."""


class ConfigurationError(ValueError):
    """A bad argument, model name, file or dataset, with a message that names the culprit and the fix."""
