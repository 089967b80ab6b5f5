"""``edgeq``: list, compare, promote and roll back registered edgeq model versions. Never imports TensorFlow."""
