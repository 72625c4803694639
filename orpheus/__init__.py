"""Orpheus: a music auto-tagger trained on the Million Song Dataset and Last.fm tags.

Importing the package is cheap: TensorFlow and librosa are imported only by the modules that use
them, so the CLI answers instantly.
"""

__version__ = "0.1.0"
