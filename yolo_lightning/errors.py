"""The exceptions yolo-lightning raises for bad input and for training that cannot go on (the CLI prints them as one
line)."""


class ConfigurationError(ValueError):
    """A bad argument, model name, file or dataset, with a message that names the culprit and the fix."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stays NaN after every recovery), with a message that says what to try."""


class NonFiniteWeightsError(TrainingError):
    """Weights with NaN or infinite values were about to be written or exported."""
