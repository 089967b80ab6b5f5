"""The tests' MLflow server: the project's one launcher (registry_tools.mlflow_server), re-exported."""
from registry_tools.mlflow_server import MlflowServer, ServerError, free_port

__all__ = ["MlflowServer", "ServerError", "free_port"]
