"""World models: encoders, predictors and the :class:`WorldModel` that composes them."""

from .world_model import WorldModel, model_size

__all__ = ["WorldModel", "model_size"]
