"""Keras models of Orpheus: the Pons et al. 2018 taggers (`pons`).

Importing this package imports TensorFlow/Keras; import it only where a model is built or loaded.
"""

from orpheus.models.pons import FRONTENDS, build_model, input_shape

__all__ = ["FRONTENDS", "build_model", "input_shape"]
