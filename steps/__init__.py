"""edgeq's pipeline: data, model, train, convert, evaluate, register. The only part that imports TensorFlow."""
