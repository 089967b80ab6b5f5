"""edgeq's device side: pull the promoted TFLite model, verify, benchmark, report.

Imports only numpy, requests, click and a TFLite runtime: never TensorFlow or mlflow.
"""
