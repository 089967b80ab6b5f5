"""edgeq's pipeline: data, model, train, convert, evaluate, register. The only part that imports TensorFlow."""
import os

# TensorFlow's C++ INFO/WARNING lines drown the pipeline's own output; errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
